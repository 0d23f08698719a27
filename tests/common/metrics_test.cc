// The metrics library: exact text exposition, label escaping, histogram
// buckets, collectors, and updates from many threads at once.
#include "common/metrics.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <thread>
#include <vector>

namespace eddy {
namespace {

TEST(MetricsTest, ExactExposition) {
  MetricsRegistry r;
  r.SimpleCounter("eddy_requests_total", "Requests answered.")->Add(3);
  GaugeFamily* g = r.AddGauge("eddy_version", "Served version.", {"replica"});
  g->Get({"a"})->Set(7);
  g->Get({"b"})->Set(-1.5);
  HistogramFamily* h = r.AddHistogram("eddy_latency_seconds", "Latency.\nSecond line \\.",
                                      {"transport"}, {0.1, 1});
  Histogram* zmq = h->Get({"zmq"}).get();
  zmq->Observe(0.05);
  zmq->Observe(0.1);  // le is inclusive
  zmq->Observe(0.5);
  zmq->Observe(3);
  EXPECT_EQ(r.Expose(),
            "# HELP eddy_latency_seconds Latency.\\nSecond line \\\\.\n"
            "# TYPE eddy_latency_seconds histogram\n"
            "eddy_latency_seconds_bucket{transport=\"zmq\",le=\"0.1\"} 2\n"
            "eddy_latency_seconds_bucket{transport=\"zmq\",le=\"1\"} 3\n"
            "eddy_latency_seconds_bucket{transport=\"zmq\",le=\"+Inf\"} 4\n"
            "eddy_latency_seconds_sum{transport=\"zmq\"} 3.65\n"
            "eddy_latency_seconds_count{transport=\"zmq\"} 4\n"
            "# HELP eddy_requests_total Requests answered.\n"
            "# TYPE eddy_requests_total counter\n"
            "eddy_requests_total 3\n"
            "# HELP eddy_version Served version.\n"
            "# TYPE eddy_version gauge\n"
            "eddy_version{replica=\"a\"} 7\n"
            "eddy_version{replica=\"b\"} -1.5\n");
}

TEST(MetricsTest, HistogramWithoutLabels) {
  MetricsRegistry r;
  r.AddHistogram("h_seconds", "h", {}, {1})->Get({})->Observe(2);
  EXPECT_EQ(r.Expose(),
            "# HELP h_seconds h\n# TYPE h_seconds histogram\n"
            "h_seconds_bucket{le=\"1\"} 0\nh_seconds_bucket{le=\"+Inf\"} 1\n"
            "h_seconds_sum 2\nh_seconds_count 1\n");
}

TEST(MetricsTest, ValuesAndEscaping) {
  EXPECT_EQ(FormatMetricValue(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(FormatMetricValue(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(FormatMetricValue(std::nan("")), "NaN");
  EXPECT_EQ(FormatMetricValue(12), "12");
  EXPECT_EQ(FormatMetricValue(0.25), "0.25");
  EXPECT_EQ(FormatMetricValue(1e21), "1e+21");
  EXPECT_EQ(EscapeLabelValue("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

TEST(MetricsTest, SameNameReturnsSameFamilyAndSeries) {
  MetricsRegistry r;
  CounterFamily* a = r.AddCounter("x_total", "x", {"k"});
  EXPECT_EQ(a, r.AddCounter("x_total", "x", {"k"}));
  EXPECT_EQ(a->Get({"1"}), a->Get({"1"}));
  EXPECT_DEATH(r.AddGauge("x_total", "x", {"k"}), "registered twice");
  EXPECT_DEATH(r.AddGauge("bad-name", "x"), "invalid metric name");
}

TEST(MetricsTest, CollectorsRunAtExposeAndRemoveIfDropsSeries) {
  MetricsRegistry r;
  Gauge* g = r.SimpleGauge("g", "g");
  int calls = 0;
  r.AddCollector([&] { g->Set(++calls); });
  EXPECT_NE(r.Expose().find("\ng 1\n"), std::string::npos);
  EXPECT_NE(r.Expose().find("\ng 2\n"), std::string::npos);
  GaugeFamily* f = r.AddGauge("v", "v", {"version"});
  auto kept = f->Get({"1"});
  f->Get({"2"})->Set(1);
  f->RemoveIf([](const std::vector<std::string>& v) { return v[0] == "1"; });
  kept->Set(5);  // still alive for its holder
  const std::string text = r.Expose();
  EXPECT_EQ(text.find("v{version=\"1\"}"), std::string::npos);
  EXPECT_NE(text.find("v{version=\"2\"} 1\n"), std::string::npos);
}

// Many threads record while another exposes: no update is lost, and every
// exposed histogram is consistent (cumulative buckets never decrease).
TEST(MetricsTest, ConcurrentUpdatesAreAllCounted) {
  MetricsRegistry r;
  Counter* c = r.SimpleCounter("c_total", "c");
  HistogramFamily* hf = r.AddHistogram("h", "h", {"t"}, {1, 2, 3});
  constexpr int kThreads = 4, kPerThread = 20000;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) {
      const std::string text = r.Expose();
      ASSERT_NE(text.find("# TYPE h histogram"), std::string::npos);
    }
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      Histogram* h = hf->Get({t % 2 == 0 ? "even" : "odd"}).get();
      for (int i = 0; i < kPerThread; ++i) {
        c->Inc();
        h->Observe(i % 4);
      }
    });
  }
  for (auto& t : threads) t.join();
  done.store(true);
  scraper.join();
  EXPECT_EQ(c->value(), kThreads * kPerThread);
  for (const char* label : {"even", "odd"}) {
    Histogram::Snapshot s = hf->Get({label})->Read();
    EXPECT_EQ(s.cumulative.back(), 2u * kPerThread);
    EXPECT_EQ(s.cumulative[0], 2u * kPerThread / 2);  // 0 and 1
    EXPECT_DOUBLE_EQ(s.sum, 2.0 * kPerThread / 4 * (0 + 1 + 2 + 3));
  }
}

}  // namespace
}  // namespace eddy
