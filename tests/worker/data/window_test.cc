#include "worker/data/window.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

namespace eddy::worker {
namespace {

constexpr uint32_t kDense = 3;
const SteadyClock::time_point kT0 = SteadyClock::time_point{} + std::chrono::hours(1);

// Row k has label k, k % 4 features (id k*100+j, field j, value k+j/2) and dense
// inputs k*10+d, so a replayed row can be told apart and checked field by field.
void AppendRow(uint64_t k, ExampleBatch* batch) {
  Example e;
  e.label = static_cast<float>(k);
  for (uint32_t j = 0; j < k % 4; ++j) {
    e.ids.push_back(k * 100 + j);
    e.fields.push_back(j);
    e.values.push_back(static_cast<float>(k) + 0.5f * static_cast<float>(j));
  }
  for (uint32_t d = 0; d < kDense; ++d) e.dense.push_back(static_cast<float>(k * 10 + d));
  batch->Append(e);
}

ExampleBatch Rows(uint64_t first, size_t n) {
  ExampleBatch batch;
  batch.dense_dim = kDense;
  for (size_t i = 0; i < n; ++i) AppendRow(first + i, &batch);
  return batch;
}

// Samples `n` rows; checks that each is an intact copy of a row in [lo, hi) and
// returns the row numbers.
std::vector<uint64_t> Sample(SlidingWindow& window, size_t n, uint64_t lo, uint64_t hi) {
  ExampleBatch out;
  out.dense_dim = kDense;
  window.SampleReplay(n, &out);
  EXPECT_EQ(out.size(), n);
  std::vector<uint64_t> ks;
  for (size_t r = 0; r < out.size(); ++r) {
    const auto k = static_cast<uint64_t>(out.labels[r]);
    EXPECT_TRUE(k >= lo && k < hi) << k << " not in [" << lo << ", " << hi << ")";
    ExampleBatch want = Rows(k, 1);
    EXPECT_EQ(out.labels[r], want.labels[0]);
    EXPECT_EQ(std::vector(out.Ids(r).begin(), out.Ids(r).end()), want.ids) << k;
    EXPECT_EQ(std::vector(out.Fields(r).begin(), out.Fields(r).end()), want.fields) << k;
    EXPECT_EQ(std::vector(out.Values(r).begin(), out.Values(r).end()), want.values) << k;
    EXPECT_EQ(std::vector(out.Dense(r).begin(), out.Dense(r).end()), want.dense) << k;
    ks.push_back(k);
  }
  return ks;
}

WindowOptions Options(uint64_t max_rows, double max_seconds, double ratio = 0.5) {
  WindowOptions options;
  options.max_rows = max_rows;
  options.max_seconds = max_seconds;
  options.replay_ratio = ratio;
  return options;
}

TEST(SlidingWindowTest, RowBoundNeverExceededAndNewestRowsKept) {
  constexpr uint64_t kMax = 100;  // spans several chunks
  SlidingWindow window(Options(kMax, 0), kDense);
  const size_t sizes[] = {0, 1, 7, 63, 64, 65, 99, 100, 101, 250, 3, 37, 1000, 2};
  uint64_t added = 0;
  for (int round = 0; round < 5; ++round) {
    for (size_t n : sizes) {
      window.Add(Rows(added, n), kT0);
      added += n;
      ASSERT_LE(window.size(), kMax);
      ASSERT_EQ(window.size(), std::min<uint64_t>(added, kMax));
      ASSERT_EQ(window.evicted(), added - window.size());
      size_t bytes = 0;  // label, offset, dense inputs; id, field, value per feature
      for (uint64_t k = added - window.size(); k < added; ++k)
        bytes += 4 * (2 + kDense) + 16 * (k % 4);
      ASSERT_EQ(window.bytes(), bytes);
      if (window.size() == 0) continue;
      // Every row held, and only those, is sampled: exactly the newest ones.
      std::vector<uint64_t> ks = Sample(window, 30 * window.size(), added - window.size(), added);
      std::vector<bool> seen(window.size());
      for (uint64_t k : ks) seen[k - (added - window.size())] = true;
      EXPECT_EQ(std::count(seen.begin(), seen.end(), false), 0);
    }
  }
}

TEST(SlidingWindowTest, TimeBoundEvictsExactlyRowsOlderThanMaxSeconds) {
  SlidingWindow window(Options(0, 10), kDense);
  window.Add(Rows(0, 5), kT0);
  window.Add(Rows(5, 5), kT0 + std::chrono::seconds(5));
  window.Add(Rows(10, 5), kT0 + std::chrono::seconds(10));
  const size_t all_bytes = window.bytes();
  EXPECT_EQ(window.size(), 15u);

  window.Expire(kT0 + std::chrono::seconds(10));  // the oldest are exactly 10 s old
  EXPECT_EQ(window.size(), 15u);
  window.Expire(kT0 + std::chrono::seconds(10) + std::chrono::nanoseconds(1));
  EXPECT_EQ(window.size(), 10u);
  EXPECT_EQ(window.evicted(), 5u);
  EXPECT_LT(window.bytes(), all_bytes);
  Sample(window, 200, 5, 15);

  // Add expires too, before its own rows count.
  window.Add(Rows(15, 2), kT0 + std::chrono::seconds(16));
  EXPECT_EQ(window.size(), 7u);
  Sample(window, 200, 10, 17);
  window.Expire(kT0 + std::chrono::seconds(60));
  EXPECT_EQ(window.size(), 0u);
  EXPECT_EQ(window.bytes(), 0u);
  EXPECT_EQ(window.evicted(), 17u);
  EXPECT_EQ(window.ReplayCount(100), 0u);
}

TEST(SlidingWindowTest, TimeBoundAcrossManyChunks) {
  SlidingWindow window(Options(0, 3), kDense);
  for (int i = 0; i < 10; ++i) window.Add(Rows(i * 3000, 3000), kT0 + std::chrono::seconds(i));
  EXPECT_EQ(window.size(), 12000u);  // seconds 6 to 9
  Sample(window, 3000, 18000, 30000);
  window.Expire(kT0 + std::chrono::seconds(11));  // second 8 is exactly 3 s old
  EXPECT_EQ(window.size(), 6000u);
  Sample(window, 3000, 24000, 30000);
}

TEST(SlidingWindowTest, BothBoundsHold) {
  SlidingWindow window(Options(70, 2.5), kDense);
  uint64_t added = 0;
  for (int i = 0; i < 40; ++i) {  // one batch of 30 rows per second
    window.Add(Rows(added, 30), kT0 + std::chrono::seconds(i));
    added += 30;
    ASSERT_LE(window.size(), 70u);
    // The row bound is the tighter one here: 70 of the 90 rows of the last 3 s.
    if (i >= 2) {
      ASSERT_EQ(window.size(), 70u);
    }
  }
  window.Expire(kT0 + std::chrono::milliseconds(41500));  // keeps the last batch: 2.5 s old
  EXPECT_EQ(window.size(), 30u);
  Sample(window, 300, added - 30, added);
  EXPECT_EQ(window.evicted() + window.size(), added);
}

TEST(SlidingWindowTest, ReplayAppendsToABatchAndCountsReplayed) {
  SlidingWindow window(Options(10, 0), kDense);
  window.Add(Rows(100, 10), kT0);
  ExampleBatch out = Rows(7, 3);  // fresh rows stay in front, intact
  window.SampleReplay(5, &out);
  ASSERT_EQ(out.size(), 8u);
  EXPECT_EQ(out.offsets.size(), 9u);
  EXPECT_EQ(out.offsets.back(), out.ids.size());
  for (size_t r = 0; r < 3; ++r) EXPECT_EQ(out.labels[r], static_cast<float>(7 + r));
  for (size_t r = 3; r < 8; ++r) {
    EXPECT_GE(out.labels[r], 100);
    EXPECT_LT(out.labels[r], 110);
  }
  EXPECT_EQ(window.replayed(), 5u);
  window.SampleReplay(0, &out);
  EXPECT_EQ(window.replayed(), 5u);
}

TEST(SlidingWindowTest, ReplayCount) {
  SlidingWindow window(Options(1000, 0, 0.25), kDense);
  EXPECT_EQ(window.ReplayCount(100), 0u);  // empty: capped by size()
  window.Add(Rows(0, 1000), kT0);
  EXPECT_EQ(window.ReplayCount(0), 0u);
  EXPECT_EQ(window.ReplayCount(300), 100u);     // 300 * 0.25 / 0.75
  EXPECT_EQ(window.ReplayCount(100), 33u);      // 33.3 rounds down
  EXPECT_EQ(window.ReplayCount(5), 2u);         // 1.67 rounds up
  EXPECT_EQ(window.ReplayCount(10000), 1000u);  // 3333, capped

  SlidingWindow half(Options(50, 0, 0.5), kDense);
  half.Add(Rows(0, 40), kT0);
  EXPECT_EQ(half.ReplayCount(30), 30u);
  EXPECT_EQ(half.ReplayCount(41), 40u);  // capped by the 40 rows held
}

TEST(SlidingWindowTest, RatioZeroStoresNothing) {
  SlidingWindow window(Options(100, 10, 0), kDense);
  for (int i = 0; i < 10; ++i) window.Add(Rows(i * 50, 50), kT0 + std::chrono::seconds(i));
  EXPECT_EQ(window.size(), 0u);
  EXPECT_EQ(window.bytes(), 0u);
  EXPECT_EQ(window.evicted(), 0u);
  EXPECT_EQ(window.ReplayCount(1000), 0u);
  ExampleBatch out;
  out.dense_dim = kDense;
  window.SampleReplay(0, &out);
  EXPECT_TRUE(out.empty());
}

TEST(SlidingWindowTest, SamplesAreDeterministicForASeed) {
  auto run = [](uint64_t seed) {
    WindowOptions options = Options(300, 0);
    options.seed = seed;
    SlidingWindow window(options, kDense);
    for (int i = 0; i < 7; ++i) window.Add(Rows(i * 100, 100), kT0);
    return Sample(window, 500, 400, 700);
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));
}

TEST(SlidingWindowTest, SamplingIsRoughlyUniform) {
  // 200 rows over several chunks, the first one partly evicted.
  SlidingWindow window(Options(200, 0), kDense);
  window.Add(Rows(0, 50), kT0);
  window.Add(Rows(50, 200), kT0);
  constexpr size_t kSamples = 200 * 1000;
  std::vector<double> counts(200);
  for (uint64_t k : Sample(window, kSamples, 50, 250)) counts[k - 50] += 1;
  double chi2 = 0;
  for (double c : counts) chi2 += (c - 1000) * (c - 1000) / 1000;
  // 199 degrees of freedom: mean 199, standard deviation 20.
  EXPECT_LT(chi2, 300) << chi2;
  EXPECT_GT(chi2, 110) << chi2;  // not suspiciously even either
}

TEST(ValidateWindowOptionsTest, NamesTheFlag) {
  auto error = [](const WindowOptions& options) {
    Status s = ValidateWindowOptions(options);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s;
    return s.message();
  };
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_NE(error(Options(0, -1)).find("--window_seconds"), std::string::npos);
  EXPECT_NE(error(Options(0, nan)).find("--window_seconds"), std::string::npos);
  EXPECT_NE(error(Options(0, inf)).find("--window_seconds"), std::string::npos);
  EXPECT_NE(error(Options(10, 0, -0.1)).find("--replay_ratio"), std::string::npos);
  EXPECT_NE(error(Options(10, 0, 1)).find("--replay_ratio"), std::string::npos);
  EXPECT_NE(error(Options(10, 0, nan)).find("--replay_ratio"), std::string::npos);
  const std::string unbounded = error(Options(0, 0, 0.3));
  EXPECT_NE(unbounded.find("--window_rows"), std::string::npos) << unbounded;
  EXPECT_NE(unbounded.find("--window_seconds"), std::string::npos) << unbounded;

  EXPECT_TRUE(ValidateWindowOptions(Options(0, 0, 0)).ok());  // no replay, no window
  EXPECT_TRUE(ValidateWindowOptions(Options(100, 0, 0.3)).ok());
  EXPECT_TRUE(ValidateWindowOptions(Options(0, 30, 0.3)).ok());
  EXPECT_TRUE(ValidateWindowOptions(Options(100, 30, 0.99)).ok());
}

}  // namespace
}  // namespace eddy::worker
