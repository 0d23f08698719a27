// eddy_train as users run it: on a stream written by eddy_gen, in local mode and
// under mpirun, with bad rows, bad flags and missing files.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/worker/train_job_fixture.h"

namespace eddy {
namespace {

TEST_F(TrainJobTest, LocalJobLearnsAndWritesMetrics) {
  const std::string data = Generate("stream.tsv", 30000);
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  std::vector<std::string> flags = kSmallModel;
  flags.insert(flags.end(), {"--local", "--num_workers=2", "--num_servers=2", "--data=" + data,
                             "--metrics_out=" + metrics});
  auto [code, out] = Train(flags);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("trained on 30,000 rows"), std::string::npos) << out;
  EXPECT_GT(SummaryAuc(out), 0.65) << out;
  std::ifstream in(metrics);
  std::string line, last;
  int lines = 0;
  while (std::getline(in, line)) {
    ++lines;
    last = line;
    EXPECT_EQ(line.front(), '{');
    EXPECT_EQ(line.back(), '}');
  }
  EXPECT_GE(lines, 1);
  EXPECT_NE(last.find("\"final\":true"), std::string::npos) << last;
  EXPECT_NE(last.find("\"rows\":30000"), std::string::npos) << last;
}

TEST_F(TrainJobTest, TheExampleFlagfileRuns) {
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  std::vector<std::string> flags = {
      "--flagfile=" + std::string(EDDY_SOURCE_DIR) + "/scripts/train.flags", "--local",
      "--data=gen:rows=6000,vocab=200", "--metrics_out=" + metrics};
  flags.insert(flags.end(), kSmallModel.begin(), kSmallModel.end());
  auto [code, out] = Train(flags);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("trained on 6,000 rows"), std::string::npos) << out;
  EXPECT_NE(out.find("by 2 worker(s)"), std::string::npos) << out;  // --num_workers=2
  std::ifstream in(metrics);
  std::string line, last;
  while (std::getline(in, line)) last = line;
  EXPECT_NE(last.find("\"staleness_histogram\":{"), std::string::npos) << last;
}

TEST_F(TrainJobTest, MpirunJobWithTwoWorkersTrainsEveryRowOnce) {
  const std::string data = Generate("stream.tsv", 20000);
  std::vector<std::string> flags = kSmallModel;
  flags.insert(flags.end(), {"--num_servers=1", "--data=" + data});
  auto [code, out] = Train(flags, /*mpi=*/true, /*ranks=*/4);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("trained on 20,000 rows"), std::string::npos) << out;
  EXPECT_NE(out.find("by 2 worker(s)"), std::string::npos) << out;
  EXPECT_GT(SummaryAuc(out), 0.6) << out;
}

TEST_F(TrainJobTest, BadRowsAreCountedAndSkippedWithinTheBudget) {
  const std::string data = Generate("stream.tsv", 5000);
  {
    std::ofstream f(data, std::ios::app);
    f << "1\tnot\tenough\tcolumns\n";
    f << "garbage\x01\x02 binary\r\n";
    f << "x";
    for (int i = 0; i < 39; ++i) f << "\t";
    f << "\n";
  }
  std::vector<std::string> flags = kSmallModel;
  flags.insert(flags.end(), {"--local", "--data=" + data});
  auto [code, out] = Train(flags);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("bad rows skipped: 3"), std::string::npos) << out;
  EXPECT_NE(out.find("trained on 5,000 rows"), std::string::npos) << out;
  EXPECT_NE(out.find(data + ":5001"), std::string::npos) << "the first bad row is named\n" << out;

  flags.push_back("--max_bad_row_rate=0");
  auto [strict_code, strict_out] = Train(flags);
  EXPECT_NE(strict_code, 0) << strict_out;
  EXPECT_NE(strict_out.find("--max_bad_row_rate"), std::string::npos) << strict_out;
}

TEST_F(TrainJobTest, WrongFlagsAndMissingDataAreRefusedClearly) {
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  const std::string missing = (dir_ / "missing.tsv").string();
  const std::vector<Case> cases = {
      {{"--local"}, "--data is required"},
      {{"--local", "--data=" + missing}, "missing.tsv"},
      {{"--local", "--data=x", "--model=gbdt"}, "unknown model"},
      {{"--local", "--data=x", "--format=csv"}, "unknown --format"},
      {{"--local", "--data=x", "--replay_ratio=0.5"}, "--window_rows"},
      {{"--local", "--data=x", "--hidden=10,-1"}, "--hidden"},
      {{"--local", "--data=x", "--tables=a:dim=2"}, "drop --tables"},
      {{"--local", "--data=a,b", "--follow"}, "--follow"},
      {{"--local", "--data=x", "--straggler=fast"}, "--straggler"},
      {{"--local", "--data=x", "--sparse_opt=opt=magic"}, "magic"},
      {{"--local", "--data=x", "--policy=bsp", "--staleness=2"}, "contradicts"},
      {{"--local", "--data=x", "--policy=bsp", "--aggregate=none"}, "sum or mean"},
      {{"--local", "--data=x", "--policy=ssp"}, "--policy=ssp needs --staleness"},
      {{"--local", "--data=x", "--policy=asp", "--staleness=3"}, "--policy=asp never waits"},
      {{"--local", "--data=x", "--policy=fastest"}, "unknown --policy"},
      {{"--local", "--data=x", "--staleness=-2"}, "--staleness"},
  };
  for (const Case& c : cases) {
    auto [code, out] = Train(c.flags);
    EXPECT_NE(code, 0) << out;
    EXPECT_NE(out.find(c.message), std::string::npos)
        << "flags: " << ::testing::PrintToString(c.flags) << "\n"
        << out;
  }
}

// A live stream that goes quiet (--follow at the end of the file): the job keeps
// reporting while it waits for the next full mini-batch.
TEST_F(TrainJobTest, AQuietFollowedStreamKeepsReportingProgress) {
  const std::string data = Generate("stream.tsv", 3000);
  Subprocess job({kBin + "/eddy_train", "--local", "--data=" + data, "--follow", "--model=lr",
                  "--batch_size=1024", "--progress_interval_ms=200"});
  // Two mini-batches are trained; the third waits for rows that never come.
  EXPECT_TRUE(job.WaitForOutput("2,048 rows 0 rows/s", 60s).has_value()) << job.output();
  job.Kill(SIGTERM);
  EXPECT_TRUE(job.WaitForExit(60s).has_value());
}

TEST_F(TrainJobTest, HelpDocumentsTheTrainingFlags) {
  auto [code, out] = Train({"--help"});
  EXPECT_EQ(code, 0);
  for (const char* flag : {"--data", "--format", "--model", "--window_rows", "--replay_ratio",
                           "--metrics_out", "--num_servers", "--staleness"}) {
    EXPECT_NE(out.find(flag), std::string::npos) << flag << "\n" << out;
  }
}

}  // namespace
}  // namespace eddy
