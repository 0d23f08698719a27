#include "bench/bench_report.h"

#include <gtest/gtest.h>

namespace eddy::bench {
namespace {

TEST(BenchReportTest, RoundTrip) {
  WorkerReport r;
  r.sparse_seconds = 10;
  r.dense_seconds = 2;
  r.sparse_latency_us = {1, 2, 3};
  r.dense_latency_us = {4};
  auto parsed = WorkerReport::Parse(r.Serialize());
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->sparse_latency_us, r.sparse_latency_us);
  EXPECT_EQ(parsed->dense_latency_us, r.dense_latency_us);
  EXPECT_EQ(parsed->sparse_seconds, 10);
  std::string bytes = r.Serialize();
  EXPECT_FALSE(WorkerReport::Parse(bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_FALSE(WorkerReport::Parse("garbage").ok());
}

TEST(BenchReportTest, PercentilesByNearestRank) {
  std::vector<float> v;
  for (int i = 1; i <= 100; ++i) v.push_back(static_cast<float>(i));
  EXPECT_EQ(Percentile(v, 0.5), 50);
  EXPECT_EQ(Percentile(v, 0.99), 99);
  EXPECT_EQ(Percentile(v, 1.0), 100);
  EXPECT_EQ(Percentile({}, 0.5), 0);
}

TEST(BenchReportTest, SummaryAddsRatesOverWorkers) {
  WorkerReport a, b;
  a.sparse_seconds = b.sparse_seconds = 2;
  a.sparse_latency_us.assign(200, 1000.0f);
  b.sparse_latency_us.assign(100, 3000.0f);
  Summary s;
  s.Add(a);
  s.Add(b);
  std::string line = s.Line("cfg", 10000, 16, 0, false);
  EXPECT_NE(line.find("150 req/s"), std::string::npos) << line;
  EXPECT_NE(line.find("1.50 M keys/s"), std::string::npos) << line;
  EXPECT_NE(line.find("p50 1.00 ms"), std::string::npos) << line;
  EXPECT_NE(line.find("p99 3.00 ms"), std::string::npos) << line;
}

}  // namespace
}  // namespace eddy::bench
