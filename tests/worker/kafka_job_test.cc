// Training from a real Kafka broker with the real binaries (eddy_gen produces,
// eddy_train consumes): a BSP job interrupted and resumed ends with exactly the
// parameters of an uninterrupted one; a job killed with SIGKILL and resumed from
// its last version with a different number of workers trains every message
// exactly once; versions record every partition's offset, the consumer group
// gets the committed version's offsets, and lag and freshness are reported; a
// self-healing job that loses a server or a worker to SIGKILL seeks every
// partition back to the version's offsets and trains every message once.
// Needs KAFKA_BOOTSTRAP (scripts/kafka.sh start prints it).
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>

#include "model_store/version_dir.h"
#include "model_store/version_reader.h"
#include "tests/worker/role_job.h"
#include "tests/worker/train_job_fixture.h"
#include "worker/data/kafka.h"

namespace eddy {
namespace {

constexpr int kPartitions = 4;

std::string Bootstrap() {
  const char* b = std::getenv("KAFKA_BOOTSTRAP");
  return b == nullptr ? "" : b;
}

class KafkaJobTest : public TrainJobTest {
 protected:
  void SetUp() override {
    TrainJobTest::SetUp();
    bootstrap_ = Bootstrap();
    ASSERT_FALSE(bootstrap_.empty())
        << "KAFKA_BOOTSTRAP is not set: start a broker with scripts/kafka.sh start and export "
           "the address it prints (or leave these tests out with ctest -LE kafka)";
    topic_ = "eddy-job-" + std::to_string(getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name();
    std::replace(topic_.begin(), topic_.end(), '/', '-');
  }

  std::string Uri(const std::string& query = "") const {
    return "kafka://" + bootstrap_ + "/" + topic_ + (query.empty() ? "" : "?" + query);
  }

  // Produces `rows` generated rows into the topic (kPartitions partitions, row i
  // to partition i mod kPartitions).
  void Produce(int rows) {
    Subprocess gen({kBin + "/eddy_gen", "--rows=" + std::to_string(rows), "--seed=5",
                    "--max_vocab=500", "--signal=2", "--ctr=0.2", "--drift_every=0",
                    "--kafka_partitions=" + std::to_string(kPartitions), "--out=" + Uri()});
    auto code = gen.WaitForExit(120s);
    ASSERT_TRUE(code.has_value() && *code == 0) << gen.output();
  }

  std::vector<std::string> Job(const std::string& data, const std::string& policy, int workers) {
    std::vector<std::string> flags = kSmallModel;
    flags.insert(flags.end(), {"--local", "--num_workers=" + std::to_string(workers),
                               "--num_servers=2", "--data=" + data, "--policy=" + policy,
                               "--batch_size=100", "--kafka_timeout_ms=20000"});
    return flags;
  }

  static uint64_t Newest(const std::string& root) {
    auto v = model_store::ListVersions(root);
    EXPECT_TRUE(v.ok() && !v->empty()) << root;
    return v.ok() && !v->empty() ? v->back() : 0;
  }

  // Partition -> next offset recorded by `version` (every worker's).
  static std::map<int32_t, int64_t> Offsets(const std::string& root, uint64_t version) {
    auto r = model_store::VersionReader::Open(root + "/" + model_store::VersionDirName(version));
    EXPECT_TRUE(r.ok()) << r.status();
    std::map<int32_t, int64_t> offsets;
    if (!r.ok()) return offsets;
    for (const auto& p : r->manifest().positions()) {
      for (const auto& q : p.partitions()) {
        EXPECT_EQ(q.rows_into_message(), 0u);  // one row per message
        EXPECT_TRUE(offsets.emplace(q.partition(), q.offset()).second)
            << "partition " << q.partition() << " recorded twice";
      }
    }
    return offsets;
  }
  static int64_t Sum(const std::map<int32_t, int64_t>& offsets) {
    int64_t sum = 0;
    for (const auto& [p, o] : offsets) sum += o;
    return sum;
  }

  // A field of the final metrics record.
  static std::string FinalField(const std::string& metrics, const std::string& name) {
    const std::string last = FinalMetricsRecord(metrics);
    std::optional<std::string> value = JsonValue(last, name);
    EXPECT_TRUE(value.has_value()) << name << " in " << last;
    return value.value_or("");
  }

  std::string bootstrap_;
  std::string topic_;
};

TEST_F(KafkaJobTest, BspInterruptedAndResumedEqualsUninterrupted) {
  constexpr int kRows = 8000;
  Produce(kRows);
  const std::string whole = (dir_ / "whole").string(), first = (dir_ / "first").string(),
                    second = (dir_ / "second").string();
  const auto flags = Job(Uri("end=latest"), "bsp", 2);
  auto w = flags;
  w.push_back("--model_dir=" + whole);
  auto [c1, o1] = Train(w);
  ASSERT_EQ(c1, 0) << o1;
  EXPECT_NE(o1.find("trained on 8,000 rows"), std::string::npos) << o1;
  auto a = flags;
  a.insert(a.end(), {"--model_dir=" + first, "--max_rows=1500"});
  auto [c2, o2] = Train(a);
  ASSERT_EQ(c2, 0) << o2;
  EXPECT_EQ(Sum(Offsets(first, Newest(first))), 3000);
  auto b = flags;
  b.insert(b.end(), {"--model_dir=" + second, "--resume_from=" + first});
  auto [c3, o3] = Train(b);
  ASSERT_EQ(c3, 0) << o3;
  auto m1 = model_store::Materialize(whole, Newest(whole));
  auto m2 = model_store::Materialize(second, Newest(second));
  ASSERT_TRUE(m1.ok() && m2.ok());
  EXPECT_GT(m1->sparse.at("emb").size(), 100u);
  ExpectSameModel(*m1, *m2);
  const std::map<int32_t, int64_t> end = {{0, kRows / 4}, {1, kRows / 4}, {2, kRows / 4},
                                          {3, kRows / 4}};
  EXPECT_EQ(Offsets(whole, Newest(whole)), end);
  EXPECT_EQ(Offsets(second, Newest(second)), end);
}

// Killed with SIGKILL after a version was cut mid-stream, then resumed from it
// with 1 or 3 workers (the job had 2): the messages the version holds plus those
// the resumed job trains are every message, once.
class KafkaKillTest : public KafkaJobTest, public ::testing::WithParamInterface<int> {};

TEST_P(KafkaKillTest, KilledAndResumedWithOtherWorkersTrainsEveryMessageOnce) {
  constexpr int kRows = 30000;
  Produce(kRows);
  const std::string first = (dir_ / "first").string(), second = (dir_ / "second").string();
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  // Unbounded: the job would wait for more messages for ever; it is killed.
  auto a = Job(Uri("group=killed-" + topic_), "asp", 2);
  a.insert(a.end(), {"--model_dir=" + first, "--snapshot_every=30ms", "--keep_versions=1000"});
  std::vector<std::string> argv = {kBin + "/eddy_train"};
  argv.insert(argv.end(), a.begin(), a.end());
  Subprocess job(argv);
  // Wait for a version cut mid-stream (the job is killed right after it): the
  // job prints a line per committed version.
  uint64_t mid = 0;
  for (uint64_t v = 1; mid == 0 && v < 1000; ++v) {
    if (!job.WaitForOutput("version " + std::to_string(v) + " (", 120s)) break;
    const int64_t sum = Sum(Offsets(first, v));
    if (sum > 0 && sum < kRows) mid = v;
  }
  ASSERT_NE(mid, 0u) << "no version was cut mid-stream: " << job.output();
  job.Kill(SIGKILL);
  job.WaitForExit(30s);
  // Resume from the version cut mid-stream (later ones may exist by the kill).
  const uint64_t resume_from = mid;
  const int64_t consumed = Sum(Offsets(first, resume_from));
  ASSERT_GT(consumed, 0);
  auto b = Job(Uri("end=latest&group=resumed-" + topic_), "asp", GetParam());
  b.insert(b.end(), {"--model_dir=" + second, "--metrics_out=" + metrics,
                     "--resume_from=" + first + "/" + model_store::VersionDirName(resume_from)});
  auto [c2, o2] = Train(b);
  ASSERT_EQ(c2, 0) << o2;
  const uint64_t rows = std::stoull(FinalField(metrics, "rows"));
  std::printf("resumed from version %llu (%lld of %d messages) with %d worker(s): %llu trained\n",
              static_cast<unsigned long long>(resume_from), static_cast<long long>(consumed),
              kRows, GetParam(), static_cast<unsigned long long>(rows));
  EXPECT_EQ(static_cast<int64_t>(rows) + consumed, kRows) << "messages lost or trained twice";
  EXPECT_EQ(FinalField(metrics, "stream_lag"), "0");
  const std::map<int32_t, int64_t> end = {{0, kRows / 4}, {1, kRows / 4}, {2, kRows / 4},
                                          {3, kRows / 4}};
  EXPECT_EQ(Offsets(second, Newest(second)), end);
  // The consumer group has the last version's offsets (committed before exit).
  auto uri = worker::ParseKafkaUri(Uri("group=resumed-" + topic_));
  ASSERT_TRUE(uri.ok());
  auto committed = worker::KafkaCommittedOffsets(*uri, 10s);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(*committed, end);
  // Manifest metrics: lag 0 at the end, freshness of the newest row trained.
  auto r = model_store::VersionReader::Open(second + "/" +
                                            model_store::VersionDirName(Newest(second)));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->manifest().metrics().at("stream_lag"), 0);
  EXPECT_GE(r->manifest().metrics().at("freshness_seconds"), 0);
}

INSTANTIATE_TEST_SUITE_P(ResumeWorkers, KafkaKillTest, ::testing::Values(1, 3),
                         [](const ::testing::TestParamInfo<int>& info) {
                           return std::to_string(info.param) + "_workers";
                         });

// Self-healing on a topic: one process per role; after version 3 a server or a
// worker gets SIGKILL and a replacement starts with the same flags. Every
// worker seeks its partitions back to the version's offsets: the messages the
// version holds plus those trained afterwards are every message, once.
class KafkaHealTest : public KafkaJobTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(KafkaHealTest, ANodeKilledMidStreamRollsBackToTheVersionsOffsets) {
  constexpr int kRows = 40000;
  Produce(kRows);
  const std::string models = (dir_ / "models").string();
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  std::vector<std::string> flags = kSmallModel;
  flags.insert(flags.end(), {"--num_workers=2", "--num_servers=2",
                             "--data=" + Uri("end=latest&group=heal-" + topic_), "--policy=asp",
                             "--batch_size=100", "--kafka_timeout_ms=20000",
                             "--model_dir=" + models, "--snapshot_every=100ms",
                             "--keep_versions=1000", "--recovery_timeout_ms=30000"});
  RoleJob job(flags, {"--metrics_out=" + metrics});
  ASSERT_TRUE(job.Start());
  Subprocess& scheduler = job.scheduler();
  ASSERT_TRUE(scheduler.WaitForOutput("version 3 (", 120s).has_value()) << scheduler.output();
  const size_t victim = GetParam() == "server" ? 1 : 3;
  job.node(victim).Kill(SIGKILL);
  job.Replace(victim);  // the supervisor's restart
  std::optional<std::string> rollback = scheduler.WaitForOutput("rolling back to version ", 60s);
  ASSERT_TRUE(rollback.has_value()) << scheduler.output();
  const uint64_t version = std::stoull(rollback->substr(
      rollback->find("rolling back to version ") + std::string("rolling back to version ").size()));
  auto code = job.Wait(240s);
  ASSERT_TRUE(code.has_value() && *code == 0) << scheduler.output();
  EXPECT_NE(scheduler.output().find("recovered from the loss of " + GetParam()),
            std::string::npos)
      << scheduler.output();
  // Trained after the rollback, plus what the version holds: every message once.
  const int64_t held = Sum(Offsets(models, version));
  const uint64_t rows = std::stoull(FinalField(metrics, "rows"));
  EXPECT_EQ(static_cast<int64_t>(rows) + held, kRows) << "messages lost or trained twice";
  const std::map<int32_t, int64_t> end = {{0, kRows / 4}, {1, kRows / 4}, {2, kRows / 4},
                                          {3, kRows / 4}};
  EXPECT_EQ(Offsets(models, Newest(models)), end);
}

INSTANTIATE_TEST_SUITE_P(Lost, KafkaHealTest, ::testing::Values("server", "worker"),
                         [](const auto& info) { return info.param; });

TEST_F(KafkaJobTest, UnreachableBrokerAndMismatchedResumesAreClearErrors) {
  // Nothing listens on port 9 of loopback.
  auto f = Job("kafka://127.0.0.1:9/" + topic_ + "?end=latest", "asp", 1);
  f.back() = "--kafka_timeout_ms=2000";
  const auto start = std::chrono::steady_clock::now();
  auto [c1, o1] = Train(f);
  EXPECT_NE(c1, 0);
  EXPECT_NE(o1.find("127.0.0.1:9"), std::string::npos) << o1;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 60s);

  // A version cut on a file stream cannot be resumed on a topic, nor one cut on
  // another topic.
  Produce(400);
  const std::string data = Generate("stream.tsv", 400);
  const std::string files = (dir_ / "files").string(), kafka = (dir_ / "kafka").string();
  auto g = Job(data, "asp", 1);
  g.push_back("--model_dir=" + files);
  auto [c2, o2] = Train(g);
  ASSERT_EQ(c2, 0) << o2;
  auto h = Job(Uri("end=latest"), "asp", 1);
  h.push_back("--resume_from=" + files);
  auto [c3, o3] = Train(h);
  EXPECT_NE(c3, 0);
  EXPECT_NE(o3.find("file stream"), std::string::npos) << o3;

  auto k = Job(Uri("end=latest"), "asp", 1);
  k.push_back("--model_dir=" + kafka);
  auto [c4, o4] = Train(k);
  ASSERT_EQ(c4, 0) << o4;
  auto other_uri = worker::ParseKafkaUri(Uri() + "-other");
  ASSERT_TRUE(other_uri.ok());
  ASSERT_TRUE(worker::CreateKafkaTopic(*other_uri, kPartitions, 30s).ok());
  auto other = Job("kafka://" + bootstrap_ + "/" + topic_ + "-other?end=latest", "asp", 1);
  other.push_back("--resume_from=" + kafka);
  auto [c5, o5] = Train(other);
  EXPECT_NE(c5, 0);
  EXPECT_NE(o5.find("was cut on topic"), std::string::npos) << o5;
}

}  // namespace
}  // namespace eddy
