// Serving replica end to end over loopback: a VersionService exports a root
// directory, a Replica follows it, clients predict and control it.
#include "serving/replica.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>
#include <thread>

#include "common/message.h"
#include "model_store/materialize.h"
#include "model_store/version_dir.h"
#include "model_store/version_service.h"
#include "serving/serve_client.h"
#include "tests/serving/serving_test_util.h"
#include "worker/data/row.h"

namespace eddy::serving {
namespace {

namespace fs = std::filesystem;
using eddy::testing::TempDir;
using eddy::testing::TestModel;
using eddy::testing::VersionContent;
using proto::ServeControlRequest;
using proto::ServeStatus;

constexpr auto kWait = std::chrono::seconds(30);

// libffm feature id of (field, index), as the parser computes it.
uint64_t Id(uint32_t field, uint64_t index) { return worker::FeatureId(field, index); }

class ReplicaTest : public ::testing::Test {
 protected:
  void StartService() {
    model_store::VersionServiceOptions o;
    o.root = root_.path();
    o.chunk_bytes = 256;  // many chunks per file
    o.scan_interval = std::chrono::milliseconds(20);
    service_ = std::make_unique<model_store::VersionService>(context_, o);
    auto endpoint = service_->Bind();
    ASSERT_TRUE(endpoint.ok()) << endpoint.status();
    service_endpoint_ = *endpoint;
    service_thread_ = std::jthread([this] { EXPECT_TRUE(service_->Run().ok()); });
  }
  void StartReplica(bool local = false, int max_cached = 3) {
    ReplicaOptions o;
    if (local) {
      o.model_dir = root_.path();
    } else {
      o.version_endpoint = service_endpoint_;
      o.cache_dir = cache_.path();
    }
    o.max_versions_cached = max_cached;
    o.watch_timeout = std::chrono::milliseconds(500);
    o.fetch_chunk_bytes = 256;
    replica_ = std::make_unique<Replica>(context_, o);
    auto endpoint = replica_->Bind();
    ASSERT_TRUE(endpoint.ok()) << endpoint.status();
    replica_endpoint_ = *endpoint;
    replica_thread_ = std::jthread([this] { EXPECT_TRUE(replica_->Run().ok()); });
    client_ = std::make_unique<ServeClient>(context_, std::chrono::seconds(30));
    ASSERT_TRUE(client_->Connect(replica_endpoint_).ok());
  }
  void TearDown() override {
    client_.reset();
    if (replica_) replica_->Stop();
    if (replica_thread_.joinable()) replica_thread_.join();
    if (service_) service_->Stop();
    if (service_thread_.joinable()) service_thread_.join();
  }
  bool WaitCurrent(uint64_t v) {
    return replica_->WaitFor([v](const ServeStatus& s) { return s.current_version() == v; }, kWait);
  }
  bool WaitRefused(uint64_t n) {
    return replica_->WaitFor([n](const ServeStatus& s) { return s.versions_refused() >= n; },
                             kWait);
  }
  // Moves version `v` from `staging` into the served root (an atomic rename).
  void Publish(const TempDir& staging, uint64_t v) {
    fs::rename(staging.path() + "/" + model_store::VersionDirName(v),
               root_.path() + "/" + model_store::VersionDirName(v));
    service_->Notify();
  }
  // A staging root holding copies of the served versions, to write versions
  // that are then altered before they appear.
  void CopyServedInto(const TempDir& staging) {
    fs::copy(root_.path(), staging.path(), fs::copy_options::recursive);
  }

  TempDir root_, cache_;
  zmq::context_t context_;
  std::unique_ptr<model_store::VersionService> service_;
  std::string service_endpoint_;
  std::jthread service_thread_;
  std::unique_ptr<Replica> replica_;
  std::string replica_endpoint_;
  std::jthread replica_thread_;
  std::unique_ptr<ServeClient> client_;
};

// --- A DeepFM with random values: predictions equal a direct computation. ---

std::vector<float> Random(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::vector<float> v(n);
  for (float& x : v) x = normal(rng);
  return v;
}

VersionContent RandomContent(const TestModel& m, const std::vector<uint64_t>& keys, bool dense,
                             uint32_t seed) {
  std::mt19937 rng(seed);
  VersionContent c;
  for (uint64_t k : keys) c.rows[k] = Random(m.row_dim(), rng);
  if (dense) {
    auto ctr = models::CtrModel::Create(m.Options());
    for (const auto& p : (*ctr)->dense_params())
      c.dense[p.name] = Random(static_cast<size_t>(p.size()), rng);
  }
  return c;
}

// The model's probabilities for libffm rows given as (field, index) lists, from
// Materialize + CtrModel::Forward (one feature per field, weight 1).
std::vector<float> Direct(const std::string& root, uint64_t version, const TestModel& m,
                          const std::vector<std::vector<std::pair<uint32_t, uint64_t>>>& rows) {
  auto model = model_store::Materialize(root, version);
  EXPECT_TRUE(model.ok()) << model.status();
  auto ctr = models::CtrModel::Create(m.Options());
  const size_t f = static_cast<size_t>(m.num_fields), k = static_cast<size_t>(m.emb_dim);
  const size_t b = rows.size();
  std::vector<float> emb(b * f * k, 0), linear(b * f, 0), mask(b * f, 0), probs(b);
  const model_store::SparseRows& table = model->sparse.at("emb");
  for (size_t r = 0; r < b; ++r) {
    for (auto [field, index] : rows[r]) {
      mask[r * f + field] = 1;
      auto row = table.Find(Id(field, index));
      if (row.empty()) continue;
      linear[r * f + field] = row[0];
      std::copy_n(row.data() + 1, k, emb.data() + (r * f + field) * k);
    }
  }
  std::vector<std::span<const float>> params;
  for (const auto& p : (*ctr)->dense_params()) params.push_back(model->dense.at(p.name).values);
  models::ModelBatch batch{static_cast<int>(b), emb, linear, mask, {}, {}};
  EXPECT_TRUE((*ctr)->Forward(batch, params, {.logits = {}, .probs = probs}).ok());
  return probs;
}

std::string Line(const std::vector<std::pair<uint32_t, uint64_t>>& row) {
  std::string line = "1";
  for (auto [field, index] : row)
    line += " " + std::to_string(field) + ":" + std::to_string(index) + ":1";
  return line;
}

TEST_F(ReplicaTest, CatchesUpFromZeroAndMatchesDirectComputation) {
  TestModel m{.model = "deepfm", .num_fields = 3, .emb_dim = 4, .hidden = "8,8"};
  std::vector<uint64_t> keys;
  for (uint32_t field = 0; field < 3; ++field)
    for (uint64_t i = 0; i < 20; ++i) keys.push_back(Id(field, i));
  testing::WriteVersion(root_.path(), m, 1, 0, RandomContent(m, keys, true, 1));
  VersionContent d2 = RandomContent(m, {Id(0, 1), Id(1, 2), Id(2, 50)}, false, 2);
  d2.tombstones = {Id(0, 3)};
  testing::WriteVersion(root_.path(), m, 2, 1, d2);
  testing::WriteVersion(root_.path(), m, 3, 2, RandomContent(m, {Id(0, 1), Id(2, 7)}, true, 3));
  StartService();
  StartReplica();
  ASSERT_TRUE(WaitCurrent(3)) << replica_->status().DebugString();

  const std::vector<std::vector<std::pair<uint32_t, uint64_t>>> rows = {
      {{0, 1}, {1, 2}, {2, 50}},  // rows changed by the deltas
      {{0, 3}, {1, 4}, {2, 7}},   // a tombstoned key reads as zero
      {{0, 999}, {2, 5}},         // an unknown id and a missing field
      {{1, 19}}};
  std::vector<std::string> lines;
  for (const auto& r : rows) lines.push_back(Line(r));
  auto got = client_->Predict(lines);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->version, 3u);
  std::vector<float> want = Direct(root_.path(), 3, m, rows);
  ASSERT_EQ(got->probabilities.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got->probabilities[i], want[i], 1e-6) << i;
  // The same rows without the label column.
  std::vector<std::string> unlabeled;
  for (const std::string& l : lines) unlabeled.push_back(l.substr(2));
  auto again = client_->Predict(unlabeled, 0, /*no_label=*/true);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->probabilities, got->probabilities);
  // Version 1 was never materialized on its own: the replica started from the
  // newest full version and applied the deltas in order.
  ServeStatus s = replica_->status();
  EXPECT_EQ(s.versions_loaded(), 3u);
  EXPECT_EQ(s.versions_refused(), 0u);

  // A new delta is followed.
  testing::WriteVersion(root_.path(), m, 4, 3, RandomContent(m, {Id(1, 4)}, true, 4));
  service_->Notify();
  ASSERT_TRUE(WaitCurrent(4));
  got = client_->Predict(lines);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->version, 4u);
  want = Direct(root_.path(), 4, m, rows);
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got->probabilities[i], want[i], 1e-6) << i;
}

// --- LR versions where every value is 0.01 * version. ---

constexpr uint32_t kFields = 3;

class UniformReplicaTest : public ReplicaTest {
 protected:
  void SetUp() override {
    for (uint32_t field = 0; field < kFields; ++field)
      for (uint64_t i = 0; i < 10; ++i) keys_.push_back(Id(field, i));
  }
  VersionContent Content(uint64_t v) const { return testing::UniformContent(m_, keys_, Value(v)); }
  void Write(uint64_t v, uint64_t parent) {
    testing::WriteVersion(root_.path(), m_, v, parent, Content(v));
  }
  void WriteIn(const TempDir& dir, uint64_t v, uint64_t parent) {
    testing::WriteVersion(dir.path(), m_, v, parent, Content(v));
  }
  static float Value(uint64_t v) { return 0.01f * static_cast<float>(v); }
  // The probability of kRow under version v: bias + 3 first-order weights.
  static double Expected(uint64_t v) { return 1.0 / (1.0 + std::exp(-4.0 * Value(v))); }
  // Answers with the version that answered, checking the value matches it.
  uint64_t PredictChecked(ServeClient& client) {
    auto got = client.Predict(std::vector<std::string>{kRow});
    EXPECT_TRUE(got.ok()) << got.status();
    if (!got.ok()) return 0;
    EXPECT_NEAR(got->probabilities[0], Expected(got->version), 1e-5)
        << "version " << got->version << " answered with values of another version";
    return got->version;
  }

  static inline const std::string kRow = "0 0:1:1 1:2:1 2:3:1";
  TestModel m_{.model = "lr", .num_fields = 3, .emb_dim = 4, .hidden = "8,8"};
  std::vector<uint64_t> keys_;
};

TEST_F(UniformReplicaTest, LocalDirectoryModeLoadsAndFollows) {
  Write(1, 0);
  StartReplica(/*local=*/true);
  ASSERT_TRUE(WaitCurrent(1));
  EXPECT_EQ(PredictChecked(*client_), 1u);
  Write(2, 1);
  ASSERT_TRUE(WaitCurrent(2));
  EXPECT_EQ(PredictChecked(*client_), 2u);
}

TEST_F(UniformReplicaTest, CorruptedVersionIsRefusedAndTheOldOneKeepsServing) {
  Write(1, 0);
  StartService();
  StartReplica();
  ASSERT_TRUE(WaitCurrent(1));
  // A delta with a flipped byte appears atomically.
  TempDir staging;
  CopyServedInto(staging);
  WriteIn(staging, 2, 1);
  WriteIn(staging, 3, 2);
  testing::CorruptFirstDataFile(staging.path() + "/" + model_store::VersionDirName(2));
  Publish(staging, 2);
  ASSERT_TRUE(WaitRefused(1));
  ServeStatus s = replica_->status();
  EXPECT_EQ(s.current_version(), 1u);
  EXPECT_NE(s.last_error().find("version 2"), std::string::npos) << s.last_error();
  EXPECT_EQ(PredictChecked(*client_), 1u);
  // A delta on top of the refused one cannot apply either: the chain is broken.
  Publish(staging, 3);
  ASSERT_TRUE(WaitRefused(2));
  EXPECT_EQ(PredictChecked(*client_), 1u);
  // The next full version restores following.
  Write(4, 0);
  service_->Notify();
  ASSERT_TRUE(WaitCurrent(4));
  EXPECT_EQ(PredictChecked(*client_), 4u);
}

TEST_F(UniformReplicaTest, MissingDeltaIsRefused) {
  Write(1, 0);
  StartService();
  StartReplica();
  ASSERT_TRUE(WaitCurrent(1));
  TempDir staging;
  CopyServedInto(staging);
  WriteIn(staging, 2, 1);
  WriteIn(staging, 3, 2);
  Publish(staging, 3);  // version 2 never appears
  ASSERT_TRUE(WaitRefused(1));
  ServeStatus s = replica_->status();
  EXPECT_EQ(s.current_version(), 1u);
  EXPECT_NE(s.last_error().find("gap"), std::string::npos) << s.last_error();
  EXPECT_EQ(PredictChecked(*client_), 1u);
  Write(5, 0);
  service_->Notify();
  ASSERT_TRUE(WaitCurrent(5));
  EXPECT_EQ(PredictChecked(*client_), 5u);
}

TEST_F(UniformReplicaTest, PinRollbackAndUnpin) {
  Write(1, 0);
  StartService();
  StartReplica(/*local=*/false, /*max_cached=*/2);
  ASSERT_TRUE(WaitCurrent(1));
  Write(2, 1);
  service_->Notify();
  ASSERT_TRUE(WaitCurrent(2));
  Write(3, 2);
  service_->Notify();
  ASSERT_TRUE(WaitCurrent(3));
  auto st = client_->Control(ServeControlRequest::STATUS);
  ASSERT_TRUE(st.ok());
  // Only the newest version is held (in its two copies); older ones are loaded by PIN.
  EXPECT_EQ(std::vector<uint64_t>(st->cached_versions().begin(), st->cached_versions().end()),
            (std::vector<uint64_t>{3}));
  EXPECT_EQ(client_->Control(ServeControlRequest::ROLLBACK, 2).status().code(),
            StatusCode::kNotFound);
  st = client_->Control(ServeControlRequest::PIN, 2);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->current_version(), 2u);
  EXPECT_EQ(PredictChecked(*client_), 2u);
  st = client_->Control(ServeControlRequest::UNPIN);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->current_version(), 3u);
  EXPECT_EQ(std::vector<uint64_t>(st->cached_versions().begin(), st->cached_versions().end()),
            (std::vector<uint64_t>{2, 3}));

  // Rollback to a version in memory: served until unpinned, also across new versions.
  st = client_->Control(ServeControlRequest::ROLLBACK, 2);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->current_version(), 2u);
  EXPECT_EQ(st->pinned_version(), 2u);
  EXPECT_EQ(PredictChecked(*client_), 2u);
  Write(4, 3);
  service_->Notify();
  ASSERT_TRUE(
      replica_->WaitFor([](const ServeStatus& s) { return s.newest_version() == 4; }, kWait));
  EXPECT_EQ(PredictChecked(*client_), 2u);
  // A request for a version in memory that is not served.
  auto v4 = client_->Predict(std::vector<std::string>{kRow}, 4);
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_EQ(v4->version, 4u);

  // Rollback needs a version in memory; pin loads one that is not.
  EXPECT_EQ(client_->Control(ServeControlRequest::ROLLBACK, 1).status().code(),
            StatusCode::kNotFound);
  st = client_->Control(ServeControlRequest::PIN, 1);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->current_version(), 1u);
  EXPECT_EQ(PredictChecked(*client_), 1u);
  EXPECT_EQ(client_->Control(ServeControlRequest::PIN, 99).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(PredictChecked(*client_), 1u);
  // max_versions_cached = 2 bounds the versions loaded besides the newest.
  st = client_->Control(ServeControlRequest::STATUS);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(std::vector<uint64_t>(st->cached_versions().begin(), st->cached_versions().end()),
            (std::vector<uint64_t>{1, 2, 4}));

  st = client_->Control(ServeControlRequest::UNPIN);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->current_version(), 4u);
  EXPECT_EQ(st->pinned_version(), 0u);
  EXPECT_EQ(PredictChecked(*client_), 4u);

  // Pinning the newest version: the next delta changes the copy it was read
  // from, so the pin moves to an immutable copy of it.
  st = client_->Control(ServeControlRequest::PIN, 4);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->current_version(), 4u);
  Write(5, 4);
  service_->Notify();
  ASSERT_TRUE(
      replica_->WaitFor([](const ServeStatus& s) { return s.newest_version() == 5; }, kWait));
  Write(6, 5);  // both copies of the newest version have moved on from 4
  service_->Notify();
  ASSERT_TRUE(
      replica_->WaitFor([](const ServeStatus& s) { return s.newest_version() == 6; }, kWait));
  EXPECT_EQ(PredictChecked(*client_), 4u);
  auto v6 = client_->Predict(std::vector<std::string>{kRow}, 6);
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->version, 6u);
  EXPECT_NEAR(v6->probabilities[0], Expected(6), 1e-5);
  st = client_->Control(ServeControlRequest::UNPIN);
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(PredictChecked(*client_), 6u);
}

TEST_F(UniformReplicaTest, BadRequestsAreRefusedAndServingContinues) {
  Write(1, 0);
  StartService();
  StartReplica();
  ASSERT_TRUE(WaitCurrent(1));
  auto bad = client_->Predict(std::vector<std::string>{kRow, "1 not:a:row:at:all x"});
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("row 1"), std::string::npos) << bad.status();
  EXPECT_EQ(client_->Predict(std::vector<std::string>{}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(client_->Predict(std::vector<std::string>{kRow}, 77).status().code(),
            StatusCode::kNotFound);
  EXPECT_GE(replica_->status().predict_errors(), 3u);
  EXPECT_EQ(PredictChecked(*client_), 1u);

  // A REQ client works too (the reply carries its envelope back).
  zmq::socket_t req(context_, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.connect(replica_endpoint_);
  proto::PredictRequest body;
  body.add_rows(kRow);
  Message request{MakeHeader(proto::PREDICT, 5), {}, {}};
  request.header.set_payload(body.SerializeAsString());
  ASSERT_TRUE(SendMessage(req, request).ok());  // REQ adds its empty delimiter
  req.set(zmq::sockopt::rcvtimeo, 30'000);
  auto reply = RecvMessage(req);
  ASSERT_TRUE(reply.ok()) << reply.status();
  EXPECT_EQ(reply->header.status_code(), 0);
  EXPECT_EQ(reply->header.request_id(), 5u);
  ASSERT_EQ(reply->values.size(), sizeof(float));
  EXPECT_NEAR(reply->values.As<float>()[0], Expected(1), 1e-5);
}

TEST_F(UniformReplicaTest, ConcurrentPredictionsDuringSwapsSeeWholeVersions) {
  Write(1, 0);
  StartService();
  StartReplica(/*local=*/false, /*max_cached=*/2);
  ASSERT_TRUE(WaitCurrent(1));
  std::atomic<bool> done{false};
  std::atomic<uint64_t> predictions{0};
  std::vector<std::jthread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&] {
      ServeClient client(context_, std::chrono::seconds(30));
      ASSERT_TRUE(client.Connect(replica_endpoint_).ok());
      uint64_t last = 0;
      while (!done.load()) {
        const uint64_t v = PredictChecked(client);
        EXPECT_GE(v, last) << "went back to an older version";
        last = v;
        predictions.fetch_add(1);
      }
    });
  }
  constexpr uint64_t kVersions = 12;
  for (uint64_t v = 2; v <= kVersions; ++v) {
    Write(v, v % 4 == 0 ? 0 : v - 1);  // deltas, and a full version now and then
    service_->Notify();
    ASSERT_TRUE(WaitCurrent(v));
    const uint64_t before = replica_->status().predict_requests();
    // Let the clients predict on this version before the next swap.
    ASSERT_TRUE(replica_->WaitFor(
        [&](const ServeStatus& s) { return s.predict_requests() >= before + 3; }, kWait));
  }
  done.store(true);
  clients.clear();
  ServeStatus s = replica_->status();
  EXPECT_EQ(s.versions_refused(), 0u);
  EXPECT_EQ(s.versions_loaded(), kVersions);
  EXPECT_EQ(s.predict_errors(), 0u);
  EXPECT_GT(predictions.load(), kVersions);
}

}  // namespace
}  // namespace eddy::serving
