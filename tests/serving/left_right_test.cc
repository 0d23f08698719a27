// The replica's left-right model (two compact copies of the newest version):
// readers looking rows up while deltas are applied always see one whole
// version, in order; a view held across a delta is never changed; the model's
// memory stays within 2.6x its serving payload.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "serving/replica.h"
#include "tests/serving/serving_test_util.h"

namespace eddy::serving {
namespace {

using eddy::testing::TempDir;
using eddy::testing::TestModel;
using eddy::testing::VersionContent;
using proto::ServeStatus;

constexpr auto kWait = std::chrono::seconds(60);

// Version v holds the keys [v * kShift, v * kShift + kRows), every value (sparse
// and dense) equal to v: delta v erases the kShift oldest keys of version v - 1,
// adds kShift new ones and rewrites every row.
constexpr uint64_t kRows = 3000, kShift = 50;

bool InVersion(uint64_t key, uint64_t v) { return key >= v * kShift && key < v * kShift + kRows; }

VersionContent Content(const TestModel& m, uint64_t v, bool full) {
  std::vector<uint64_t> keys;
  for (uint64_t k = v * kShift; k < v * kShift + kRows; ++k) keys.push_back(k);
  VersionContent c = testing::UniformContent(m, keys, static_cast<float>(v));
  if (!full) {
    for (uint64_t k = (v - 1) * kShift; k < v * kShift; ++k) c.tombstones.push_back(k);
  }
  return c;
}

class LeftRightTest : public ::testing::Test {
 protected:
  void Start(int max_cached = 3) {
    ReplicaOptions o;
    o.model_dir = root_.path();
    o.scan_interval = std::chrono::milliseconds(5);
    o.max_versions_cached = max_cached;
    replica_ = std::make_unique<Replica>(context_, o);
    ASSERT_TRUE(replica_->Bind().ok());
    thread_ = std::jthread([this] { EXPECT_TRUE(replica_->Run().ok()); });
  }
  void TearDown() override {
    if (replica_) replica_->Stop();
    if (thread_.joinable()) thread_.join();
  }
  void Write(uint64_t v, bool full = false) {
    testing::WriteVersion(root_.path(), m_, v, full ? 0 : v - 1, Content(m_, v, full));
  }
  bool WaitCurrent(uint64_t v) {
    return replica_->WaitFor([v](const ServeStatus& s) { return s.current_version() == v; }, kWait);
  }

  TestModel m_{.model = "lr", .num_fields = 3, .emb_dim = 4, .hidden = "8,8"};
  TempDir root_;
  zmq::context_t context_;
  std::unique_ptr<Replica> replica_;
  std::jthread thread_;
};

// Checks every row and dense value of `model` against version model.version();
// returns the number of mismatches (reported through gtest, capped).
int CheckWhole(const LoadedModel& model, uint64_t first_key, uint64_t last_key) {
  const uint64_t v = model.version();
  const float want = static_cast<float>(v);
  int bad = 0;
  for (uint64_t k = first_key; k < last_key; ++k) {
    std::span<const float> row = model.sparse().Find(k);
    const bool present = !row.empty();
    if (present != InVersion(k, v) || (present && row[0] != want)) {
      if (++bad <= 5) {
        ADD_FAILURE() << "version " << v << " key " << k << ": present " << present << " value "
                      << (present ? row[0] : 0.0f);
      }
    }
  }
  for (std::span<const float> d : model.dense_params()) {
    for (float x : d) {
      if (x != want && ++bad <= 5) ADD_FAILURE() << "version " << v << " dense value " << x;
    }
  }
  if (model.rows() != kRows && ++bad <= 5) ADD_FAILURE() << "version " << v << ": " << model.rows();
  return bad;
}

TEST_F(LeftRightTest, ReadersAlwaysSeeOneWholeVersionInOrder) {
  Write(1, /*full=*/true);
  Start();
  ASSERT_TRUE(WaitCurrent(1));
  constexpr uint64_t kVersions = 40;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> reads{0};
  std::vector<std::jthread> readers;
  for (int t = 0; t < 3; ++t) {
    readers.emplace_back([&, t] {
      uint64_t last = 0;
      while (!done.load()) {
        std::shared_ptr<const LoadedModel> model = replica_->serving();
        ASSERT_NE(model, nullptr);
        ASSERT_GE(model->version(), last) << "went back to an older version";
        last = model->version();
        // Every key a version may hold, around this one's range.
        const uint64_t lo = last > 2 ? (last - 2) * kShift : 0;
        ASSERT_EQ(CheckWhole(*model, lo + static_cast<uint64_t>(t), (last + 2) * kShift + kRows), 0);
        reads.fetch_add(1);
      }
    });
  }
  [&] {
    for (uint64_t v = 2; v <= kVersions; ++v) {
      Write(v, /*full=*/v % 13 == 0);  // deltas, and a full version now and then
      ASSERT_TRUE(WaitCurrent(v)) << replica_->status().DebugString();
      const uint64_t before = reads.load();
      // Let the readers look at this version (and the loader catch the other copy up).
      while (reads.load() < before + 3 && !HasFatalFailure()) std::this_thread::yield();
    }
  }();
  done.store(true);
  readers.clear();
  const ServeStatus s = replica_->status();
  EXPECT_EQ(s.versions_refused(), 0u);
  EXPECT_EQ(s.versions_loaded(), kVersions);
  // The newest version alone is held (in two copies).
  EXPECT_EQ(std::vector<uint64_t>(s.cached_versions().begin(), s.cached_versions().end()),
            std::vector<uint64_t>{kVersions});
}

TEST_F(LeftRightTest, AViewHeldAcrossDeltasIsNeverChanged) {
  Write(1, /*full=*/true);
  Start();
  ASSERT_TRUE(WaitCurrent(1));
  std::shared_ptr<const LoadedModel> held = replica_->serving();
  ASSERT_EQ(held->version(), 1u);
  // Version 2 is published on the other copy while version 1 is read here.
  Write(2);
  ASSERT_TRUE(WaitCurrent(2));
  EXPECT_EQ(CheckWhole(*held, 0, 4 * kShift + kRows), 0);
  std::shared_ptr<const LoadedModel> second = replica_->serving();
  EXPECT_EQ(CheckWhole(*second, 0, 4 * kShift + kRows), 0);
  second.reset();
  // Version 1's copy is caught up once released; versions 3 and 4 use both copies.
  held.reset();
  Write(3);
  Write(4);
  ASSERT_TRUE(WaitCurrent(4));
  EXPECT_EQ(CheckWhole(*replica_->serving(), 0, 6 * kShift + kRows), 0);
  EXPECT_EQ(replica_->status().versions_refused(), 0u);
}

TEST_F(LeftRightTest, ModelMemoryIsWithinTwoPointSixTimesTheServingPayload) {
  // An LR-like model: 1 float a row.
  constexpr uint64_t kBig = 200000;
  VersionContent c = testing::UniformContent(m_, {}, 1.0f);
  for (uint64_t k = 0; k < kBig; ++k) c.rows[k * 7919] = {1.0f};
  testing::WriteVersion(root_.path(), m_, 1, 0, c);
  VersionContent d;
  for (uint64_t k = 0; k < kBig / 100; ++k) d.rows[k * 7919] = {2.0f};        // updates
  for (uint64_t k = kBig; k < kBig + kBig / 200; ++k) d.rows[k * 7919] = {2.0f};  // new rows
  for (uint64_t k = 1; k < kBig / 200; ++k) d.tombstones.push_back(k * 7919 + 1);  // absent keys
  testing::WriteVersion(root_.path(), m_, 2, 1, d);
  Start();
  ASSERT_TRUE(WaitCurrent(2));
  const uint64_t rows = kBig + kBig / 200;
  std::shared_ptr<const LoadedModel> model = replica_->serving();
  ASSERT_EQ(model->rows(), rows);
  const uint64_t payload = model->model().payload_bytes();
  model.reset();
  EXPECT_GE(payload, rows * 12);
  // Version 2's second copy is caught up before the loader looks at version 3.
  testing::WriteVersion(root_.path(), m_, 3, 2, VersionContent{});
  ASSERT_TRUE(WaitCurrent(3));
  const uint64_t bytes = replica_->model_memory_bytes();
  EXPECT_GE(bytes, 2 * payload);
  EXPECT_LE(static_cast<double>(bytes), 2.6 * static_cast<double>(payload))
      << bytes << " bytes for a payload of " << payload;
}

}  // namespace
}  // namespace eddy::serving
