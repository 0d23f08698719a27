#include "worker/metrics/auc.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace eddy::worker {
namespace {

// O(n^2) pair counting: the definition of AUC with ties counting 1/2.
double BruteForceAuc(const std::vector<float>& s, const std::vector<float>& y) {
  double wins = 0, pairs = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if (!IsPositive(y[i])) continue;
    for (size_t j = 0; j < s.size(); ++j) {
      if (IsPositive(y[j])) continue;
      pairs += 1;
      wins += s[i] > s[j] ? 1.0 : s[i] == s[j] ? 0.5 : 0.0;
    }
  }
  return wins / pairs;
}

struct Data {
  std::vector<float> scores, labels;
};

// `levels` distinct score values (few levels = many ties); labels correlated with scores.
Data RandomData(uint32_t seed, size_t n, int levels) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> level(0, levels - 1);
  std::uniform_real_distribution<float> u(0, 1);
  Data d;
  for (size_t i = 0; i < n; ++i) {
    const float s = (level(rng) + 0.5f) / levels;
    d.scores.push_back(s);
    d.labels.push_back(u(rng) < 0.2f + 0.6f * s ? 1.0f : 0.0f);
  }
  return d;
}

TEST(ExactAucTest, MatchesBruteForceWithManyTies) {
  for (uint32_t seed = 1; seed <= 20; ++seed) {
    for (int levels : {2, 5, 50, 100000}) {
      const Data d = RandomData(seed, 300 + seed * 17, levels);
      EXPECT_NEAR(ExactAuc(d.scores, d.labels), BruteForceAuc(d.scores, d.labels), 1e-12)
          << "seed " << seed << " levels " << levels;
    }
  }
}

TEST(ExactAucTest, AllEqualScoresGiveHalf) {
  std::vector<float> s(100, 0.3f), y(100, 0.0f);
  for (int i = 0; i < 100; i += 3) y[i] = 1;
  EXPECT_DOUBLE_EQ(ExactAuc(s, y), 0.5);
}

TEST(ExactAucTest, PerfectAndInvertedOrderings) {
  std::vector<float> s, y;
  for (int i = 0; i < 50; ++i) {
    s.push_back(i * 0.01f);
    y.push_back(i >= 30 ? 1.0f : 0.0f);
  }
  EXPECT_DOUBLE_EQ(ExactAuc(s, y), 1.0);
  for (float& v : y) v = 1 - v;
  EXPECT_DOUBLE_EQ(ExactAuc(s, y), 0.0);
}

TEST(ExactAucTest, SingleClassOrEmptyIsNaN) {
  std::vector<float> s = {0.1f, 0.5f, 0.9f};
  EXPECT_TRUE(std::isnan(ExactAuc(s, std::vector<float>{1, 1, 1})));
  EXPECT_TRUE(std::isnan(ExactAuc(s, std::vector<float>{0, 0, 0})));
  EXPECT_TRUE(std::isnan(ExactAuc({}, {})));
  AucAccumulator acc(16);
  acc.AddBatch(s, std::vector<float>{1, 1, 1});
  EXPECT_TRUE(std::isnan(acc.Auc()));
  EXPECT_TRUE(std::isnan(acc.ErrorBound()));
}

TEST(ExactAucTest, NaNScoresRankLowest) {
  const std::vector<float> y = {1, 0, 1, 0};
  const std::vector<float> with_nan = {0.9f, std::nanf(""), 0.2f, 0.5f};
  const std::vector<float> with_low = {0.9f, -1e30f, 0.2f, 0.5f};
  EXPECT_DOUBLE_EQ(ExactAuc(with_nan, y), ExactAuc(with_low, y));
  AucAccumulator acc(8);
  EXPECT_EQ(acc.BinOf(std::nanf("")), 0u);
}

TEST(AucAccumulatorTest, WithinDocumentedBoundOfExact) {
  std::mt19937 rng(7);
  std::normal_distribution<double> z(0, 1);
  std::uniform_real_distribution<double> u(0, 1);
  for (uint32_t bins : {8u, 64u, 1024u, AucAccumulator::kDefaultBins}) {
    std::vector<float> s, y;
    for (int i = 0; i < 20000; ++i) {
      const double p = 1 / (1 + std::exp(-(-2.5 + 1.2 * z(rng))));  // CTR-like spread
      s.push_back(static_cast<float>(p));
      y.push_back(u(rng) < p ? 1.0f : 0.0f);
    }
    AucAccumulator acc(bins);
    acc.AddBatch(s, y);
    const double exact = ExactAuc(s, y);
    EXPECT_LE(std::abs(acc.Auc() - exact), acc.ErrorBound() + 1e-12) << bins;
    if (bins == AucAccumulator::kDefaultBins) {
      EXPECT_LT(acc.ErrorBound(), 1e-3);
    }
  }
}

TEST(AucAccumulatorTest, OutOfRangeScoresLandInEndBins) {
  AucAccumulator acc(10);
  EXPECT_EQ(acc.BinOf(-1.0f), 0u);
  EXPECT_EQ(acc.BinOf(0.0f), 0u);
  EXPECT_EQ(acc.BinOf(1.0f), 9u);
  EXPECT_EQ(acc.BinOf(2.0f), 9u);
  EXPECT_EQ(acc.BinOf(0.5f), 5u);
  EXPECT_LT(acc.BinOf(0.1f), acc.BinOf(0.9f));
}

TEST(AucAccumulatorTest, MergeEqualsUnion) {
  const Data a = RandomData(1, 1000, 1000), b = RandomData(2, 700, 30);
  AucAccumulator acc_a, acc_b, acc_union;
  acc_a.AddBatch(a.scores, a.labels);
  acc_b.AddBatch(b.scores, b.labels);
  acc_union.AddBatch(a.scores, a.labels);
  acc_union.AddBatch(b.scores, b.labels);
  ASSERT_TRUE(acc_a.Merge(acc_b).ok());
  EXPECT_EQ(acc_a, acc_union);
  EXPECT_DOUBLE_EQ(acc_a.Auc(), acc_union.Auc());
  AucAccumulator other_bins(10);
  EXPECT_EQ(acc_a.Merge(other_bins).code(), StatusCode::kInvalidArgument);
}

TEST(AucAccumulatorTest, SerializeRoundTripAndRejectTruncation) {
  const Data d = RandomData(3, 2000, 500);
  AucAccumulator acc;
  acc.AddBatch(d.scores, d.labels);
  std::string bytes;
  acc.AppendTo(&bytes);
  StatusOr<AucAccumulator> parsed = AucAccumulator::Parse(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, acc);
  for (size_t n = 0; n < bytes.size(); n += 7) {
    EXPECT_EQ(AucAccumulator::Parse(std::string_view(bytes).substr(0, n)).status().code(),
              StatusCode::kDataLoss)
        << n;
  }
  EXPECT_FALSE(AucAccumulator::Parse(bytes + "x").ok());
  std::string corrupt = bytes;
  corrupt[0] ^= 1;
  EXPECT_FALSE(AucAccumulator::Parse(corrupt).ok());
}

}  // namespace
}  // namespace eddy::worker
