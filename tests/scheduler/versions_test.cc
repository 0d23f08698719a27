// Model versions cut from a running job: every version holds exactly the pushes
// each worker sent before its position, on every server and in every table
// (sparse rows, dense tensors), under ASP with pushes in flight and under BSP.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include "common/message.h"
#include "model_store/materialize.h"
#include "model_store/version_dir.h"
#include "tests/testing/local_cluster.h"
#include "tests/testing/temp_dir.h"

namespace eddy {
namespace {

namespace fs = std::filesystem;

using testing::TempDir;

// Collects on_version summaries; Wait blocks until `n` arrived (or a deadline).
class Versions {
 public:
  void Add(const scheduler::VersionSummary& v) {
    std::lock_guard lock(mu_);
    all_.push_back(v);
    cv_.notify_all();
  }
  bool WaitFor(size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return all_.size() >= n; });
  }
  std::vector<scheduler::VersionSummary> all() {
    std::lock_guard lock(mu_);
    return all_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<scheduler::VersionSummary> all_;
};

constexpr int kKeysPerWorker = 8;
constexpr uint64_t kSharedKey = 999'999;

std::vector<uint64_t> KeysOf(int w) {
  std::vector<uint64_t> keys;
  for (int j = 0; j < kKeysPerWorker; ++j) keys.push_back(static_cast<uint64_t>(w) * 1000 + j);
  keys.push_back(kSharedKey);
  return keys;
}

struct CutCase {
  int servers;
  int workers;
  bool bsp;
  int full_every;  // 1: every version full; else deltas in between
};

class CutTest : public ::testing::TestWithParam<CutCase> {};

// Each worker's batch pushes 1 to each of its own keys, to a shared key and to
// its element of a dense tensor (SGD, lr 1, zeros): a version then holds
// -position on the worker's keys and element, and -(sum of positions) on the
// shared key, if and only if it is a consistent cut.
TEST_P(CutTest, EveryVersionHoldsExactlyThePushesBeforeEachWorkersPosition) {
  const CutCase c = GetParam();
  TempDir dir;
  Versions versions;
  testing::LocalClusterOptions o;
  o.num_servers = c.servers;
  o.num_workers = c.workers;
  o.tables = "c:dim=2,opt=sgd,lr=1,init=zeros;d:shape=" + std::to_string(c.workers) +
             ",opt=sgd,lr=1,init=zeros";
  if (c.bsp) {
    o.staleness = 0;
    o.aggregate = "sum";
  }
  o.configure_scheduler = [&](scheduler::SchedulerOptions* so) {
    so->model_dir = dir.path();
    so->keep_full_versions = 1000;
    so->full_every = c.full_every;
    so->on_version = [&](const scheduler::VersionSummary& v) { versions.Add(v); };
  };
  auto cluster = testing::LocalCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();

  std::atomic<bool> stop{false};
  std::vector<std::jthread> workers;
  std::vector<Status> errors(c.workers);
  for (int w = 0; w < c.workers; ++w) {
    workers.emplace_back([&, w] {
      worker::Client& client = (*cluster)->client(w);
      const std::vector<uint64_t> keys = KeysOf(w);
      std::vector<float> grads(keys.size() * 2, 1.0f);
      std::vector<float> dense(c.workers, 0.0f);
      dense[w] = 1.0f;
      std::deque<worker::OpPtr> inflight;
      for (uint64_t batch = 1; !stop.load() || batch < 20; ++batch) {
        inflight.push_back(client.Push("c", keys, grads));
        inflight.push_back(client.PushDense("d", Buffer::CopyOf(std::span<const float>(dense))));
        inflight.push_back(client.ClockAt(batch));
        while (inflight.size() > 3 * 16) {  // up to 16 batches in flight
          Status s = inflight.front()->Wait();
          if (!s.ok()) {
            errors[w] = s;
            return;
          }
          inflight.pop_front();
        }
      }
      for (auto& op : inflight) {
        Status s = op->Wait();
        if (!s.ok() && errors[w].ok()) errors[w] = s;
      }
    });
  }
  constexpr size_t kVersions = 8;
  for (size_t i = 1; i <= kVersions; ++i) {
    (*cluster)->scheduler().RequestSnapshot();
    ASSERT_TRUE(versions.WaitFor(i)) << "version " << i << " did not complete";
  }
  stop.store(true);
  workers.clear();
  for (const Status& s : errors) ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE((*cluster)->Shutdown().ok());
  // The last version, taken when every worker finished, holds everything.
  ASSERT_GE(versions.all().size(), kVersions + 1);

  uint64_t moving = 0;  // versions taken while workers were pushing
  for (const auto& v : versions.all()) {
    ASSERT_TRUE(v.ok) << "version " << v.version << ": " << v.error;
    auto model = model_store::Materialize(dir.path(), v.version);
    ASSERT_TRUE(model.ok()) << model.status();
    const model_store::MaterializedModel& m = *model;
    ASSERT_EQ(m.manifest.positions_size(), c.workers);
    const model_store::SparseRows& rows = m.sparse.at("c");
    const eddy::model_store::DenseTensor& d = m.dense.at("d");
    ASSERT_EQ(d.values.size(), static_cast<size_t>(c.workers));
    double sum = 0;
    for (const auto& p : m.manifest.positions()) {
      const int w = p.worker();
      const float pos = static_cast<float>(p.rows_consumed());
      sum += pos;
      EXPECT_EQ(d.values[w], -pos) << "version " << v.version << " worker " << w;
      for (uint64_t key : KeysOf(w)) {
        if (key == kSharedKey) continue;
        auto value = rows.Find(key);
        if (pos == 0 && value.empty()) continue;  // never pushed yet
        ASSERT_EQ(value.size(), 2u) << "key " << key;
        EXPECT_EQ(value[0], -pos) << "version " << v.version << " key " << key;
        EXPECT_EQ(value[1], -pos) << "version " << v.version << " key " << key;
      }
      moving += p.rows_consumed() > 0;
    }
    auto shared = rows.Find(kSharedKey);
    if (sum > 0) {
      ASSERT_EQ(shared.size(), 2u);
      EXPECT_EQ(shared[0], static_cast<float>(-sum)) << "version " << v.version;
    }
    if (c.bsp && v.version != versions.all().back().version) {
      // A BSP version is a clock: every worker at the same position (but in the
      // last one, taken at the end, workers may have finished after fewer clocks).
      for (const auto& p : m.manifest.positions()) {
        EXPECT_EQ(p.rows_consumed(), m.manifest.positions(0).rows_consumed());
      }
    }
    EXPECT_GE(v.pause_seconds, 0.0);
    EXPECT_EQ(m.manifest.metrics().count("pause_ms"), 1u);
  }
  EXPECT_GT(moving, 0u);
  if (c.full_every > 1) {
    int deltas = 0;
    for (const auto& v : versions.all()) deltas += v.parent != 0;
    EXPECT_GT(deltas, 0);
  }
}

INSTANTIATE_TEST_SUITE_P(Policies, CutTest,
                         ::testing::Values(CutCase{1, 1, false, 1}, CutCase{2, 3, false, 3},
                                           CutCase{2, 3, true, 1}, CutCase{3, 2, true, 4}),
                         [](const auto& info) {
                           return std::to_string(info.param.servers) + "servers" +
                                  std::to_string(info.param.workers) + "workers" +
                                  (info.param.bsp ? "Bsp" : "Asp") +
                                  (info.param.full_every > 1 ? "Deltas" : "Full");
                         });

// A cluster of one worker over a table of counters (SGD, lr 1, zeros) whose
// versions go to `dir` and are collected by `versions`; `more` adjusts the rest.
testing::LocalClusterOptions OneWorkerOptions(
    int servers, const std::string& dir, Versions* versions,
    std::function<void(scheduler::SchedulerOptions*)> more) {
  testing::LocalClusterOptions o;
  o.num_servers = servers;
  o.num_workers = 1;
  o.tables = "c:dim=2,opt=sgd,lr=1,init=zeros";
  o.configure_scheduler = [dir, versions, more](scheduler::SchedulerOptions* so) {
    so->model_dir = dir;
    so->snapshot_at_end = false;
    so->on_version = [versions](const scheduler::VersionSummary& v) { versions->Add(v); };
    if (more) more(so);
  };
  return o;
}

// A version whose files cannot be written (a full disk) fails cleanly: the job
// goes on, nothing half-written is visible, and older versions stay valid.
TEST(VersionsTest, AFailedWriteLeavesNoVersionAndTheJobGoesOn) {
  TempDir dir;
  Versions versions;
  auto cluster = testing::LocalCluster::Start(
      OneWorkerOptions(2, dir.path(), &versions, [](scheduler::SchedulerOptions* so) {
        so->test_fail_after_bytes = 100;  // every data file is larger
      }));
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  worker::Client& client = (*cluster)->client(0);
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; k < 100; ++k) keys.push_back(k);
  std::vector<float> grads(keys.size() * 2, 1.0f);
  ASSERT_TRUE(client.Push("c", keys, grads)->Wait().ok());
  ASSERT_TRUE(client.ClockAt(1)->Wait().ok());
  (*cluster)->scheduler().RequestSnapshot();
  ASSERT_TRUE(versions.WaitFor(1));
  const auto v = versions.all()[0];
  EXPECT_FALSE(v.ok);
  EXPECT_NE(v.error.find("No space left"), std::string::npos) << v.error;
  auto listed = model_store::ListVersions(dir.path());
  ASSERT_TRUE(listed.ok());
  EXPECT_TRUE(listed->empty());
  // Training goes on after the failure.
  ASSERT_TRUE(client.Push("c", keys, grads)->Wait().ok());
  ASSERT_TRUE(client.ClockAt(2)->Wait().ok());
  EXPECT_EQ((*cluster)->scheduler().stats().versions_failed, 1u);
  ASSERT_TRUE((*cluster)->Shutdown().ok());
}

// On demand: SNAPSHOT_NOW on the scheduler's control socket (what
// `eddy_models snapshot` sends) answers with the version number, which commits.
TEST(VersionsTest, OnDemandSnapshotOverTheControlSocket) {
  TempDir dir;
  Versions versions;
  auto cluster = testing::LocalCluster::Start(OneWorkerOptions(1, dir.path(), &versions, {}));
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  zmq::socket_t control((*cluster)->context(), zmq::socket_type::dealer);
  control.set(zmq::sockopt::linger, 0);
  control.connect((*cluster)->scheduler_endpoint());
  Message request{MakeHeader(proto::SNAPSHOT_NOW, 7), {}, {}};
  ASSERT_TRUE(SendMessage(control, request).ok());
  auto reply = RecvMessage(control);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->header.status_code(), 0) << reply->header.status_message();
  EXPECT_EQ(reply->header.request_id(), 7u);
  EXPECT_EQ(reply->header.version(), 1);
  ASSERT_TRUE(versions.WaitFor(1));
  EXPECT_TRUE(versions.all()[0].ok);
  EXPECT_EQ(versions.all()[0].version, 1u);
  ASSERT_TRUE((*cluster)->Shutdown().ok());
}

// Rows not updated for --evict_after_versions versions are evicted: the next
// delta carries their tombstones, so a reader of the chain drops them too.
TEST(VersionsTest, EvictedRowsLeaveTheChainThroughTombstones) {
  TempDir dir;
  Versions versions;
  auto cluster = testing::LocalCluster::Start(
      OneWorkerOptions(2, dir.path(), &versions, [](scheduler::SchedulerOptions* so) {
        so->full_every = 100;
        so->keep_full_versions = 100;
        so->evict_after_versions = 2;
      }));
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  worker::Client& client = (*cluster)->client(0);
  std::vector<uint64_t> old_keys, live_keys;
  for (uint64_t k = 0; k < 50; ++k) old_keys.push_back(k);
  for (uint64_t k = 100; k < 150; ++k) live_keys.push_back(k);
  std::vector<float> grads(50 * 2, 1.0f);
  ASSERT_TRUE(client.Push("c", old_keys, grads)->Wait().ok());
  for (int v = 1; v <= 5; ++v) {
    ASSERT_TRUE(client.Push("c", live_keys, grads)->Wait().ok());
    ASSERT_TRUE(client.ClockAt(v)->Wait().ok());
    (*cluster)->scheduler().RequestSnapshot();
    ASSERT_TRUE(versions.WaitFor(v));
  }
  ASSERT_TRUE((*cluster)->Shutdown().ok());
  uint64_t tombstones = 0, evicted = 0;
  for (const auto& v : versions.all()) {
    ASSERT_TRUE(v.ok) << v.error;
    evicted += v.evicted;
    auto reader = model_store::VersionReader::Open(v.dir);
    ASSERT_TRUE(reader.ok());
    for (const auto& f : reader->manifest().files()) tombstones += f.tombstones();
  }
  EXPECT_EQ(evicted, old_keys.size());
  EXPECT_EQ(tombstones, old_keys.size());
  auto first = model_store::Materialize(dir.path(), versions.all().front().version);
  auto last = model_store::Materialize(dir.path(), versions.all().back().version);
  ASSERT_TRUE(first.ok() && last.ok());
  EXPECT_EQ(first->sparse.at("c").size(), 100u);
  EXPECT_EQ(last->sparse.at("c").size(), 50u);
  for (uint64_t k : old_keys) EXPECT_TRUE(last->sparse.at("c").Find(k).empty()) << k;
  for (uint64_t k : live_keys) EXPECT_EQ(last->sparse.at("c").Find(k)[0], -5.0f) << k;
}

}  // namespace
}  // namespace eddy
