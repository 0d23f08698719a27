// A serving replica following a training job live: the scheduler serves the
// versions it commits (--serve_port), the replica fetches them over ZeroMQ and
// answers with each new version as soon as it is committed.
#include <gtest/gtest.h>

#include <cmath>
#include <condition_variable>
#include <filesystem>
#include <mutex>
#include <thread>

#include "models/ctr_model.h"
#include "serving/replica.h"
#include "serving/serve_client.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/temp_dir.h"
#include "worker/data/parser.h"
#include "worker/trainer.h"

namespace eddy {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

TEST(LiveServingTest, ReplicaAnswersWithEachVersionTheJobCommits) {
  TempDir models, cache;
  models::ModelOptions mo;
  mo.kind = models::ModelKind::kLr;
  mo.num_fields = 2;
  mo.emb_dim = 0;
  mo.dense_dim = 0;
  auto model = models::CtrModel::Create(mo);
  ASSERT_TRUE(model.ok()) << model.status();
  worker::ModelTableOptions table_options;
  table_options.linear_opt = "opt=sgd,lr=1";
  table_options.dense_opt = "opt=sgd,lr=1";
  auto tables = worker::ModelTables(**model, "emb", table_options);
  ASSERT_TRUE(tables.ok()) << tables.status();

  std::mutex mu;
  std::condition_variable cv;
  std::vector<scheduler::VersionSummary> committed;
  testing::LocalClusterOptions o;
  o.num_servers = 2;
  o.num_workers = 1;
  o.table_configs = *tables;
  o.configure_scheduler = [&](scheduler::SchedulerOptions* so) {
    so->model_dir = models.path();
    so->serve_port = 0;
    so->full_every = 3;
    so->snapshot_at_end = false;
    so->version_attributes = {{"model", "lr"},        {"num_fields", "2"}, {"dense_dim", "0"},
                              {"emb_dim", "0"},       {"hidden", ""},      {"format", "libsvm"},
                              {"sparse_table", "emb"}};
    so->on_version = [&](const scheduler::VersionSummary& v) {
      std::lock_guard lock(mu);
      committed.push_back(v);
      cv.notify_all();
    };
  };
  auto cluster = testing::LocalCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  const std::string service = (*cluster)->scheduler().version_service_endpoint();
  ASSERT_FALSE(service.empty());

  zmq::context_t context;
  serving::ReplicaOptions ro;
  ro.version_endpoint = service;
  ro.cache_dir = cache.path();
  ro.watch_timeout = std::chrono::milliseconds(200);
  serving::Replica replica(context, ro);
  auto endpoint = replica.Bind();
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  std::jthread serve([&] { replica.Run().IgnoreError(); });
  serving::ServeClient client(context, std::chrono::seconds(10));
  ASSERT_TRUE(client.Connect(*endpoint).ok());

  // The id the parser gives feature 7 of a libsvm row: the worker pushes to it.
  auto parser = worker::MakeParser("libsvm");
  ASSERT_TRUE(parser.ok());
  worker::Example ex;
  ASSERT_TRUE((*parser)->Parse("1 7:1", &ex).ok());
  const std::vector<uint64_t> key = {ex.ids[0]};
  const std::vector<std::string> rows = {"1 7:1"};
  worker::Client& w = (*cluster)->client(0);
  double last = 0;
  for (int i = 1; i <= 5; ++i) {
    // lr 1: each push of -0.5 raises the weight of feature 7 by 0.5.
    ASSERT_TRUE(w.Push("emb", key, std::vector<float>{-0.5f})->Wait().ok());
    ASSERT_TRUE(w.ClockAt(static_cast<uint64_t>(i))->Wait().ok());
    (*cluster)->scheduler().RequestSnapshot();
    {
      std::unique_lock lock(mu);
      ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30),
                              [&] { return committed.size() >= static_cast<size_t>(i); }));
      ASSERT_TRUE(committed.back().ok) << committed.back().error;
    }
    const uint64_t version = committed.back().version;
    ASSERT_TRUE(
        replica.WaitFor([&](const proto::ServeStatus& s) { return s.current_version() >= version; },
                        std::chrono::seconds(30)))
        << replica.status().DebugString();
    auto p = client.Predict(rows);
    ASSERT_TRUE(p.ok()) << p.status();
    EXPECT_EQ(p->version, version);
    ASSERT_EQ(p->probabilities.size(), 1u);
    // sigmoid(w0 + 0.5 i), w0 the row's small random initial weight: each
    // version's logit is 0.5 above the previous one's.
    const double logit = std::log(p->probabilities[0] / (1.0 - p->probabilities[0]));
    if (i == 1) {
      EXPECT_NEAR(logit, 0.5, 0.05);
    } else {
      EXPECT_NEAR(logit - last, 0.5, 1e-4) << "version " << version;
    }
    last = logit;
  }
  const auto status = replica.status();
  EXPECT_EQ(status.versions_refused(), 0u);
  EXPECT_GE(status.versions_loaded(), 5u);
  replica.Stop();
  serve.join();
  ASSERT_TRUE((*cluster)->Shutdown().ok());
}

}  // namespace
}  // namespace eddy
