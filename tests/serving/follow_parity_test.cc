// The replica's model after following a real job's chain of versions (deltas
// applied in place to its two compact copies, full versions among them) equals
// model_store::Materialize of the same version: every sparse row, every dense
// tensor. The real eddy_train writes the versions (training checkpoints with
// optimizer state, which serving drops; tombstones from --evict_after_versions).
#include <gtest/gtest.h>

#include "model_store/materialize.h"
#include "model_store/version_dir.h"
#include "serving/replica.h"
#include "tests/worker/train_job_fixture.h"

namespace eddy {
namespace {

// Every row and dense tensor of `want` is in `got` with the same values, and
// nothing else.
void ExpectServedEquals(const serving::ServingModel& got,
                        const model_store::MaterializedModel& want) {
  ASSERT_EQ(got.sparse.size(), want.sparse.size());
  for (const auto& [name, rows] : want.sparse) {
    auto it = got.sparse.find(name);
    ASSERT_NE(it, got.sparse.end()) << name;
    const serving::ServingRows& served = it->second;
    ASSERT_EQ(served.size(), rows.size()) << name;
    ASSERT_EQ(served.dim(), rows.dim()) << name;
    for (uint64_t key : rows.keys()) {
      std::span<const float> w = rows.Find(key), g = served.Find(key);
      ASSERT_EQ(g.size(), w.size()) << name << " key " << key;
      for (size_t i = 0; i < w.size(); ++i) ASSERT_EQ(g[i], w[i]) << name << " key " << key;
    }
  }
  ASSERT_EQ(got.dense.size(), want.dense.size());
  for (const auto& [name, tensor] : want.dense) {
    auto it = got.dense.find(name);
    ASSERT_NE(it, got.dense.end()) << name;
    ASSERT_EQ(it->second, tensor.values) << name;
  }
}

class FollowParityTest : public TrainJobTest {};

TEST_F(FollowParityTest, FollowedChainEqualsMaterializeAtEveryVersion) {
  const std::string data = Generate("rows.tsv", 12000);
  const std::string models = (dir_ / "models").string(), served = (dir_ / "served").string();
  std::vector<std::string> flags = {"--local", "--data=" + data, "--model_dir=" + models,
                                    "--snapshot_every=1000rows", "--progress_interval_ms=10",
                                    "--full_every=5", "--evict_after_versions=2",
                                    "--keep_versions=1000"};
  flags.insert(flags.end(), kSmallModel.begin(), kSmallModel.end());
  flags.push_back("--progress_interval_ms=10");
  auto [code, out] = Train(flags);
  ASSERT_EQ(code, 0) << out;
  auto versions = model_store::ListVersions(models);
  ASSERT_TRUE(versions.ok()) << versions.status();
  ASSERT_GE(versions->size(), 4u) << out;
  fs::create_directories(served);

  zmq::context_t context;
  serving::ReplicaOptions o;
  o.model_dir = served;
  o.scan_interval = std::chrono::milliseconds(10);
  serving::Replica replica(context, o);
  ASSERT_TRUE(replica.Bind().ok());
  std::jthread serve([&] { EXPECT_TRUE(replica.Run().ok()); });
  int deltas = 0, fulls = 0;
  for (uint64_t v : *versions) {
    SCOPED_TRACE("version " + std::to_string(v));
    // Each version appears atomically in the replica's root, in order.
    fs::copy(fs::path(models) / model_store::VersionDirName(v),
             dir_ / ("staging_" + std::to_string(v)), fs::copy_options::recursive);
    fs::rename(dir_ / ("staging_" + std::to_string(v)),
               fs::path(served) / model_store::VersionDirName(v));
    ASSERT_TRUE(replica.WaitFor(
        [v](const proto::ServeStatus& s) { return s.current_version() == v; },
        std::chrono::seconds(60)))
        << replica.status().DebugString();
    auto want = model_store::Materialize(models, v);
    ASSERT_TRUE(want.ok()) << want.status();
    (want->manifest.kind() == proto::Manifest::KIND_FULL ? fulls : deltas)++;
    std::shared_ptr<const serving::LoadedModel> got = replica.serving();
    ASSERT_EQ(got->version(), v);
    ExpectServedEquals(got->model(), *want);
  }
  EXPECT_GE(deltas, 3);
  EXPECT_EQ(replica.status().versions_refused(), 0u);
  EXPECT_EQ(replica.status().versions_loaded(), versions->size());
  replica.Stop();
}

}  // namespace
}  // namespace eddy
