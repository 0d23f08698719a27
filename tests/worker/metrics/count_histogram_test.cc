#include "worker/metrics/count_histogram.h"

#include <gtest/gtest.h>

#include <cmath>

namespace eddy::worker {
namespace {

TEST(CountHistogramTest, MeanQuantilesAndOverflow) {
  CountHistogram h;
  EXPECT_TRUE(std::isnan(h.Mean()));
  EXPECT_TRUE(std::isnan(h.Quantile(0.5)));
  for (int v = 0; v < 100; ++v) h.Add(v < 98 ? v % 4 : 1000);  // 0,1,2,3 ... then two 1000s
  h.Add(-5);                                                   // counts as 0
  EXPECT_EQ(h.count(), 101u);
  EXPECT_EQ(h.max(), 1000u);
  EXPECT_NEAR(h.Mean(), (145.0 + 2000) / 101.0, 1e-9);
  EXPECT_EQ(h.Quantile(0.5), 1);
  EXPECT_EQ(h.Quantile(0.97), 3);
  EXPECT_EQ(h.Quantile(0.99), CountHistogram::kExact);
  EXPECT_EQ(h.Quantile(1.0), CountHistogram::kExact);
  EXPECT_EQ(h.ToJson(), "{\"0\":26,\"1\":25,\"2\":24,\"3\":24,\">=256\":2}");
}

TEST(CountHistogramTest, MergesAndRoundTrips) {
  CountHistogram a, b;
  a.Add(1);
  a.Add(70);
  b.Add(3);
  a.Merge(b);
  EXPECT_EQ(a.count(), 3u);
  EXPECT_EQ(a.max(), 70u);
  std::string bytes;
  a.AppendTo(&bytes);
  bytes += "tail";
  std::string_view view = bytes;
  auto parsed = CountHistogram::ParseFrom(&view);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, a);
  EXPECT_EQ(view, "tail");
  std::string_view truncated = std::string_view(bytes).substr(0, 40);
  EXPECT_FALSE(CountHistogram::ParseFrom(&truncated).ok());
  std::string_view garbage = "xyz";
  EXPECT_FALSE(CountHistogram::ParseFrom(&garbage).ok());
}

}  // namespace
}  // namespace eddy::worker
