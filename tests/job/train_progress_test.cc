#include "job/train_progress.h"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "worker/trainer.h"

namespace eddy::job {
namespace {

using worker::TrainerStats;

TEST(TrainProgressTest, MergesWorkersAndWritesJson) {
  TrainerStats a, b;
  a.rows = 100;
  a.seconds = 2;
  b.rows = 300;
  b.seconds = 4;
  for (int i = 0; i < 100; ++i) a.metrics.Add(i % 2 ? 0.8f : 0.3f, static_cast<float>(i % 2));
  std::string ra, rb;
  a.AppendTo(&ra);
  b.AppendTo(&rb);
  const auto start = SteadyClock::now();
  TrainProgress progress(3, start);
  EXPECT_FALSE(progress.Update({"", "", ""}, start));
  ASSERT_TRUE(progress.Update({ra, "", "not stats"}, start + std::chrono::seconds(1)));
  EXPECT_EQ(progress.reporting_workers(), 1);
  EXPECT_EQ(progress.bad_reports(), 1u);
  ASSERT_TRUE(progress.Update({ra, rb, ""}, start + std::chrono::seconds(2)));
  EXPECT_EQ(progress.total().rows, 400u);
  EXPECT_DOUBLE_EQ(progress.recent_rows_per_s(), 300.0);
  EXPECT_DOUBLE_EQ(progress.rows_per_s(), 100.0);  // 400 rows / slowest worker's 4 s
  const std::string json = progress.JsonLine(false);
  EXPECT_NE(json.find("\"rows\":400"), std::string::npos) << json;
  EXPECT_NE(json.find("\"auc\":1"), std::string::npos) << json;
  EXPECT_NE(progress.Line().find("400 rows"), std::string::npos) << progress.Line();
  EXPECT_NE(progress.Line().find("2/3 workers"), std::string::npos) << progress.Line();
}

// Workers reading a topic report their partitions: the progress shows the lag
// summed over every worker's partitions and the freshness of the newest row.
TEST(TrainProgressTest, KafkaLagAndFreshnessOfEveryWorkersPartitions) {
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  TrainerStats a, b;
  a.rows = b.rows = 10;
  a.stream_topic = b.stream_topic = "clicks";
  a.stream.Set(0, {.offset = 40, .high_watermark = 100, .newest_timestamp_ms = now_ms - 3000});
  a.stream.Set(2, {.offset = 90, .high_watermark = 100, .newest_timestamp_ms = now_ms - 9000});
  b.stream.Set(1, {.offset = 5, .high_watermark = 5, .newest_timestamp_ms = now_ms - 2000});
  std::string ra, rb;
  a.AppendTo(&ra);
  b.AppendTo(&rb);
  TrainProgress progress(2);
  ASSERT_TRUE(progress.Update({ra, rb}, SteadyClock::now()));
  EXPECT_EQ(progress.total().stream.entries().size(), 3u);
  EXPECT_EQ(progress.total().stream.Lag(), 70u);
  const std::string line = progress.Line();
  EXPECT_NE(line.find("lag 70 msgs fresh "), std::string::npos) << line;
  const std::string json = progress.JsonLine(false);
  EXPECT_NE(json.find("\"stream_lag\":70"), std::string::npos) << json;
  EXPECT_NE(json.find("{\"partition\":0,\"offset\":40,\"high_watermark\":100,\"lag\":60}"),
            std::string::npos)
      << json;
  EXPECT_NE(progress.Summary().find("stream clicks: 3 partition(s), lag 70 messages"),
            std::string::npos)
      << progress.Summary();
}

}  // namespace
}  // namespace eddy::job
