#include "worker/metrics/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace eddy::worker {
namespace {

struct Rows {
  std::vector<float> p, y;
};

Rows RandomRows(uint32_t seed, size_t n) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(0, 1);
  Rows r;
  for (size_t i = 0; i < n; ++i) {
    const float p = u(rng) * 0.4f;
    r.p.push_back(i % 97 == 0   ? 0.0f
                  : i % 89 == 0 ? 1.0f
                                : p);  // some extremes to exercise clipping
    r.y.push_back(u(rng) < p ? 1.0f : 0.0f);
  }
  return r;
}

TEST(RowLogLossTest, MatchesFormulaAndClips) {
  EXPECT_NEAR(RowLogLoss(0.2f, 1), -std::log(0.2), 1e-6);
  EXPECT_NEAR(RowLogLoss(0.2f, 0), -std::log(0.8), 1e-6);
  EXPECT_NEAR(RowLogLoss(0.0f, 1), -std::log(kLogLossEpsilon), 1e-9);
  EXPECT_NEAR(RowLogLoss(1.0f, 0), -std::log(kLogLossEpsilon), 1e-6);
  EXPECT_TRUE(std::isfinite(RowLogLoss(0.0f, 1)));
}

TEST(BinaryMetricsTest, MatchesDirectFormulas) {
  const Rows r = RandomRows(1, 5000);
  BinaryMetrics m;
  m.AddBatch(r.p, r.y);
  double ll = 0, sp = 0, pos = 0;
  for (size_t i = 0; i < r.p.size(); ++i) {
    const double q = std::min(std::max(static_cast<double>(r.p[i]), 1e-7), 1 - 1e-7);
    ll += r.y[i] > 0.5 ? -std::log(q) : -std::log(1 - q);
    sp += r.p[i];
    pos += r.y[i];
  }
  const double n = static_cast<double>(r.p.size());
  EXPECT_EQ(m.count(), r.p.size());
  EXPECT_EQ(m.positives(), static_cast<uint64_t>(pos));
  EXPECT_NEAR(m.LogLoss(), ll / n, 1e-9);
  EXPECT_NEAR(m.MeanPrediction(), sp / n, 1e-9);
  EXPECT_NEAR(m.Ctr(), pos / n, 1e-12);
  EXPECT_NEAR(m.Calibration(), (sp / n) / (pos / n), 1e-9);
  EXPECT_LE(std::abs(m.Auc() - ExactAuc(r.p, r.y)), m.AucErrorBound() + 1e-12);
  EXPECT_NE(m.Summary().find("logloss="), std::string::npos);
}

TEST(BinaryMetricsTest, EmptyIsNaN) {
  BinaryMetrics m;
  EXPECT_TRUE(std::isnan(m.LogLoss()));
  EXPECT_TRUE(std::isnan(m.Ctr()));
  EXPECT_TRUE(std::isnan(m.Calibration()));
  EXPECT_TRUE(std::isnan(m.Auc()));
}

TEST(BinaryMetricsTest, MergeEqualsUnionAndRoundTrips) {
  const Rows a = RandomRows(2, 3000), b = RandomRows(3, 1000);
  BinaryMetrics ma, mb, mu;
  ma.AddBatch(a.p, a.y);
  mb.AddBatch(b.p, b.y);
  mu.AddBatch(a.p, a.y);
  mu.AddBatch(b.p, b.y);
  ASSERT_TRUE(ma.Merge(mb).ok());
  EXPECT_EQ(ma.count(), mu.count());
  EXPECT_EQ(ma.auc(), mu.auc());
  EXPECT_NEAR(ma.LogLoss(), mu.LogLoss(), 1e-12);
  EXPECT_NEAR(ma.MeanPrediction(), mu.MeanPrediction(), 1e-12);

  std::string bytes;
  ma.AppendTo(&bytes);
  StatusOr<BinaryMetrics> parsed = BinaryMetrics::Parse(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, ma);
  for (size_t n = 0; n < bytes.size(); n += 5) {
    EXPECT_FALSE(BinaryMetrics::Parse(std::string_view(bytes).substr(0, n)).ok()) << n;
  }
  EXPECT_FALSE(BinaryMetrics::Parse(bytes + std::string(1, '\0')).ok());
}

TEST(ProgressiveMetricsTest, WindowCoversRecentRows) {
  ProgressiveMetrics pm({.window_rows = 1000, .window_buckets = 4, .auc_bins = 256});
  // 5000 rows predicting 0.1, then 800 rows predicting 0.3.
  for (int i = 0; i < 5000; ++i) pm.Add(0.1f, i % 10 == 0);
  for (int i = 0; i < 800; ++i) pm.Add(0.3f, i % 3 == 0);
  const BinaryMetrics w = pm.RecentWindow();
  EXPECT_GE(w.count(), 750u);  // within one bucket of window_rows
  EXPECT_LE(w.count(), 1000u);
  EXPECT_EQ(pm.SinceStart().count(), 5800u);
  EXPECT_GT(w.MeanPrediction(), 0.25);  // mostly the new regime
  EXPECT_LT(pm.SinceStart().MeanPrediction(), 0.14);
  EXPECT_NE(pm.ProgressLine().find("recent"), std::string::npos);
}

TEST(ProgressiveMetricsTest, MergeEqualsUnionOfAlignedStreams) {
  const ProgressiveOptions opt{.window_rows = 500, .window_buckets = 5, .auc_bins = 128};
  const Rows a = RandomRows(4, 2000), b = RandomRows(5, 2000);
  ProgressiveMetrics pa(opt), pb(opt);
  pa.AddBatch(a.p, a.y);
  pb.AddBatch(b.p, b.y);
  BinaryMetrics total, window(opt.auc_bins);
  total = BinaryMetrics(opt.auc_bins);
  total.AddBatch(a.p, a.y);
  total.AddBatch(b.p, b.y);
  // Both streams are 2000 rows: each window holds the last 500 rows of each.
  for (size_t i = 1500; i < 2000; ++i) {
    window.Add(a.p[i], a.y[i]);
    window.Add(b.p[i], b.y[i]);
  }
  ASSERT_TRUE(pa.Merge(pb).ok());
  EXPECT_EQ(pa.SinceStart().auc(), total.auc());
  EXPECT_EQ(pa.SinceStart().count(), total.count());
  const BinaryMetrics merged_window = pa.RecentWindow();
  EXPECT_EQ(merged_window.auc(), window.auc());
  EXPECT_NEAR(merged_window.LogLoss(), window.LogLoss(), 1e-12);

  ProgressiveMetrics other({.window_rows = 600, .window_buckets = 5, .auc_bins = 128});
  EXPECT_EQ(pa.Merge(other).code(), StatusCode::kInvalidArgument);
}

TEST(ProgressiveMetricsTest, SerializeRoundTripAndRejectTruncation) {
  ProgressiveMetrics pm({.window_rows = 300, .window_buckets = 3, .auc_bins = 64});
  const Rows r = RandomRows(6, 1000);
  pm.AddBatch(r.p, r.y);
  std::string bytes;
  pm.AppendTo(&bytes);
  StatusOr<ProgressiveMetrics> parsed = ProgressiveMetrics::Parse(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->SinceStart(), pm.SinceStart());
  EXPECT_EQ(parsed->RecentWindow(), pm.RecentWindow());
  // The parsed accumulator keeps working like the original.
  pm.Add(0.5f, 1);
  parsed->Add(0.5f, 1);
  EXPECT_EQ(parsed->RecentWindow(), pm.RecentWindow());
  for (size_t n = 0; n < bytes.size(); n += 11) {
    EXPECT_FALSE(ProgressiveMetrics::Parse(std::string_view(bytes).substr(0, n)).ok()) << n;
  }
  EXPECT_FALSE(ProgressiveMetrics::Parse(std::string_view(bytes).substr(0, bytes.size() - 1)).ok());
}

}  // namespace
}  // namespace eddy::worker
