// Model versions of a real eddy_train job, and resuming from them: a BSP job
// interrupted and resumed ends with exactly the parameters of an uninterrupted
// one; under ASP no row is lost or trained twice; bad versions and flags are
// refused with what to do.
#include <fstream>

#include "model_store/materialize.h"
#include "model_store/version_dir.h"
#include "tests/worker/train_job_fixture.h"

namespace eddy {
namespace {

class ResumeJobTest : public TrainJobTest {
 protected:
  std::vector<std::string> Job(const std::string& data, const std::string& policy) {
    std::vector<std::string> flags = kSmallModel;
    flags.insert(flags.end(), {"--local", "--num_workers=2", "--num_servers=2", "--data=" + data,
                               "--policy=" + policy, "--batch_size=100"});
    return flags;
  }
  static uint64_t Newest(const std::string& root) {
    auto v = model_store::ListVersions(root);
    EXPECT_TRUE(v.ok() && !v->empty()) << root;
    return v.ok() && !v->empty() ? v->back() : 0;
  }
  static uint64_t PositionSum(const std::string& root, uint64_t version) {
    auto r = model_store::VersionReader::Open(root + "/" + model_store::VersionDirName(version));
    EXPECT_TRUE(r.ok()) << r.status();
    uint64_t sum = 0;
    if (r.ok()) {
      for (const auto& p : r->manifest().positions()) sum += p.rows_consumed();
    }
    return sum;
  }
};

TEST_F(ResumeJobTest, BspInterruptedAndResumedEqualsUninterrupted) {
  const std::string data = Generate("stream.tsv", 12000);
  const std::string whole = (dir_ / "whole").string(), first = (dir_ / "first").string(),
                    second = (dir_ / "second").string();
  auto flags = Job(data, "bsp");
  auto w = flags;
  w.push_back("--model_dir=" + whole);
  auto [c1, o1] = Train(w);
  ASSERT_EQ(c1, 0) << o1;
  // Interrupted after 2,500 rows per worker: its last version is the cut.
  auto a = flags;
  a.insert(a.end(), {"--model_dir=" + first, "--max_rows=2500"});
  auto [c2, o2] = Train(a);
  ASSERT_EQ(c2, 0) << o2;
  EXPECT_EQ(PositionSum(first, Newest(first)), 5000u);
  auto b = flags;
  b.insert(b.end(), {"--model_dir=" + second, "--resume_from=" + first});
  auto [c3, o3] = Train(b);
  ASSERT_EQ(c3, 0) << o3;
  EXPECT_NE(o3.find("skipped the 5,000 rows"), std::string::npos) << o3;
  // The moment each worker trains again is logged (bench/heal_bench.sh reads it).
  EXPECT_NE(o3.find("training again: first mini-batch trained"), std::string::npos) << o3;
  auto m1 = model_store::Materialize(whole, Newest(whole));
  auto m2 = model_store::Materialize(second, Newest(second));
  ASSERT_TRUE(m1.ok() && m2.ok());
  EXPECT_GT(m1->sparse.at("emb").size(), 100u);
  ExpectSameModel(*m1, *m2);
  EXPECT_EQ(PositionSum(second, Newest(second)), 12000u);
}

// --resume_from=latest: the same command line for the first launch (nothing to
// resume: a fresh start) and every relaunch (the newest version in --model_dir).
TEST_F(ResumeJobTest, ResumeFromLatestStartsAfreshThenGoesOnInTheSameDirectory) {
  const std::string data = Generate("stream.tsv", 12000);
  const std::string whole = (dir_ / "whole").string(), models = (dir_ / "models").string();
  auto flags = Job(data, "bsp");
  auto w = flags;
  w.push_back("--model_dir=" + whole);
  auto [c1, o1] = Train(w);
  ASSERT_EQ(c1, 0) << o1;
  auto job = flags;
  job.insert(job.end(), {"--model_dir=" + models, "--resume_from=latest"});
  auto first = job;
  first.push_back("--max_rows=2500");  // stops early, as if it had died after its last version
  auto [c2, o2] = Train(first);
  ASSERT_EQ(c2, 0) << o2;
  EXPECT_NE(o2.find("starting afresh"), std::string::npos) << o2;
  auto [c3, o3] = Train(job);
  ASSERT_EQ(c3, 0) << o3;
  EXPECT_NE(o3.find("skipped the 5,000 rows"), std::string::npos) << o3;
  auto m1 = model_store::Materialize(whole, Newest(whole));
  auto m2 = model_store::Materialize(models, Newest(models));
  ASSERT_TRUE(m1.ok() && m2.ok());
  ExpectSameModel(*m1, *m2);
}

TEST_F(ResumeJobTest, AspResumeFromAVersionCutMidTrainingTrainsEveryRowOnce) {
  const std::string data = Generate("stream.tsv", 40000);
  const std::string first = (dir_ / "first").string(), second = (dir_ / "second").string();
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  auto flags = Job(data, "asp");
  // A version every 2,000 rows while pushes are in flight.
  auto a = flags;
  a.insert(a.end(), {"--model_dir=" + first, "--snapshot_every=20ms", "--keep_versions=100",
                     "--progress_interval_ms=20"});
  auto [c1, o1] = Train(a);
  ASSERT_EQ(c1, 0) << o1;
  auto versions = model_store::ListVersions(first);
  ASSERT_TRUE(versions.ok());
  ASSERT_GE(versions->size(), 2u) << o1;
  // The first version that has rows but not all of them: cut mid-training.
  uint64_t mid = 0, consumed = 0;
  for (uint64_t v : *versions) {
    consumed = PositionSum(first, v);
    if (consumed > 0 && consumed < 40000) {
      mid = v;
      break;
    }
  }
  ASSERT_NE(mid, 0u) << "no version was cut mid-training";
  auto b = flags;
  b.insert(b.end(), {"--model_dir=" + second, "--metrics_out=" + metrics,
                     "--resume_from=" + first + "/" + model_store::VersionDirName(mid)});
  auto [c2, o2] = Train(b);
  ASSERT_EQ(c2, 0) << o2;
  auto [rows, skipped] = FinalRows(metrics);
  EXPECT_EQ(skipped, consumed);
  EXPECT_EQ(rows + skipped, 40000u) << "rows lost or trained twice";
  EXPECT_EQ(PositionSum(second, Newest(second)), 40000u);
}

TEST_F(ResumeJobTest, BadVersionsAndFlagsAreRefusedWithWhatToDo) {
  const std::string data = Generate("stream.tsv", 3000);
  const std::string root = (dir_ / "models").string();
  auto flags = Job(data, "asp");
  auto a = flags;
  a.push_back("--model_dir=" + root);
  auto [c0, o0] = Train(a);
  ASSERT_EQ(c0, 0) << o0;
  const uint64_t v = Newest(root);

  struct Case {
    std::vector<std::string> extra;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--resume_from=" + (dir_ / "nowhere").string()}, "nowhere"},
      {{"--resume_from=7"}, "which --model_dir"},
      {{"--resume_from=latest"}, "give --model_dir"},
      {{"--resume_from=" + root, "--num_workers=3"}, "resume it with --num_workers=2"},
      {{"--snapshot_every=often", "--model_dir=" + root}, "--snapshot_every='often'"},
      {{"--snapshot_every=5s"}, "needs --model_dir"},
      {{"--serve_port=0"}, "needs --model_dir"},
      {{"--full_every=0", "--model_dir=" + root}, "--full_every must be at least 1"},
      {{"--evict_after_versions=3"}, "needs --model_dir"},
  };
  for (const Case& c : cases) {
    auto f = flags;
    f.insert(f.end(), c.extra.begin(), c.extra.end());
    if (c.extra[0] == "--resume_from=" + root)
      f.erase(std::find(f.begin(), f.end(), "--num_workers=2"));
    auto [code, out] = Train(f);
    EXPECT_NE(code, 0) << c.extra[0];
    EXPECT_NE(out.find(c.message), std::string::npos) << c.extra[0] << ": " << out;
  }

  // A corrupted data file: refused, naming the file.
  auto reader = model_store::VersionReader::Open(root + "/" + model_store::VersionDirName(v));
  ASSERT_TRUE(reader.ok());
  const std::string file =
      root + "/" + model_store::VersionDirName(v) + "/" + reader->manifest().files(0).path();
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(100);
    f.put('\x5a');
  }
  auto b = flags;
  b.push_back("--resume_from=" + root);
  auto [c1, o1] = Train(b);
  EXPECT_NE(c1, 0);
  EXPECT_NE(o1.find(reader->manifest().files(0).path()), std::string::npos) << o1;
}

}  // namespace
}  // namespace eddy
