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

}  // namespace
}  // namespace eddy::job
