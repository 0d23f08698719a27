// The broker restarts while a real eddy_train job reads a topic: the job waits
// for it (--kafka_timeout_ms), goes on where it was and trains every message
// exactly once. Restarts the broker of the default state dir (scripts/kafka.sh
// restart), so ctest runs it RUN_SERIAL. Needs KAFKA_BOOTSTRAP.
#include <fstream>
#include <map>

#include "model_store/version_dir.h"
#include "model_store/version_reader.h"
#include "tests/worker/train_job_fixture.h"

namespace eddy {
namespace {

TEST_F(TrainJobTest, KafkaBrokerRestartMidJobLosesAndRepeatsNothing) {
  const char* bootstrap = std::getenv("KAFKA_BOOTSTRAP");
  ASSERT_NE(bootstrap, nullptr)
      << "KAFKA_BOOTSTRAP is not set: start a broker with scripts/kafka.sh start and export the "
         "address it prints (or leave these tests out with ctest -LE kafka)";
  constexpr int kRows = 60000;
  const std::string topic = "eddy-job-restart-" + std::to_string(getpid());
  const std::string base = "kafka://" + std::string(bootstrap) + "/" + topic;
  Subprocess gen({kBin + "/eddy_gen", "--rows=" + std::to_string(kRows), "--seed=5",
                  "--max_vocab=500", "--kafka_partitions=4", "--out=" + base});
  auto produced = gen.WaitForExit(120s);
  ASSERT_TRUE(produced.has_value() && *produced == 0) << gen.output();

  const std::string models = (dir_ / "models").string();
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  // A small prefetch, so the job still fetches from the broker when it restarts.
  std::vector<std::string> argv = {kBin + "/eddy_train"};
  argv.insert(argv.end(), kSmallModel.begin(), kSmallModel.end());
  argv.insert(argv.end(), {"--local", "--num_workers=2", "--num_servers=1", "--policy=asp",
                           "--data=" + base +
                               "?end=latest&rdkafka.queued.min.messages=500"
                               "&rdkafka.queued.max.messages.kbytes=256",
                           "--kafka_timeout_ms=60000", "--model_dir=" + models,
                           "--snapshot_every=200ms", "--metrics_out=" + metrics});
  Subprocess job(argv);
  ASSERT_TRUE(job.WaitForOutput("version 2 (", 120s)) << job.output();
  const std::string restart = EDDY_SOURCE_DIR "/scripts/kafka.sh restart";
  ASSERT_EQ(std::system(restart.c_str()), 0) << restart;
  auto code = job.WaitForExit(180s);
  ASSERT_TRUE(code.has_value()) << job.output();
  ASSERT_EQ(*code, 0) << job.output();

  // Every message once: the rows trained and the final offsets.
  const std::string last = FinalMetricsRecord(metrics);
  std::optional<std::string> rows = JsonValue(last, "rows");
  ASSERT_TRUE(rows.has_value()) << last;
  EXPECT_EQ(std::stoull(*rows), static_cast<uint64_t>(kRows)) << "messages lost or repeated";
  auto versions = model_store::ListVersions(models);
  ASSERT_TRUE(versions.ok() && !versions->empty());
  auto reader = model_store::VersionReader::Open(models + "/" +
                                                 model_store::VersionDirName(versions->back()));
  ASSERT_TRUE(reader.ok()) << reader.status();
  std::map<int32_t, int64_t> offsets;
  for (const auto& p : reader->manifest().positions()) {
    for (const auto& q : p.partitions()) offsets[q.partition()] = q.offset();
  }
  EXPECT_EQ(offsets, (std::map<int32_t, int64_t>{
                         {0, kRows / 4}, {1, kRows / 4}, {2, kRows / 4}, {3, kRows / 4}}));
}

}  // namespace
}  // namespace eddy
