// VersionWriter: atomic commits, aborts, simulated full disks, refused
// versions and schemas, and concurrent shards.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "model_store/chain.h"
#include "model_store/materialize.h"
#include "model_store/retention.h"
#include "tests/model_store/model_store_test_util.h"

namespace eddy::model_store {
namespace {

namespace fs = std::filesystem;
using proto::Manifest;

// ---------------------------------------------------------------------------
// Atomicity and failures.

TEST_F(ModelFormatTest, CrashBeforeCommitLeavesNoVisibleVersion) {
  WriteSimple(1, 0);
  WriteSimple(2, 1, {1, 4}, {12});
  {
    auto w = VersionWriter::Begin(root_, 3, 2, true, kF32);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w->AddSparse(MakeShard("emb", 0, 4, 0, {1, 2}, 3)).ok());
    // Simulate a crash: the process dies with its temporary directory on disk.
    fs::copy(w->temp_dir(), root_ + "/.v000000000003.tmp-crashed", fs::copy_options::recursive);
    EXPECT_EQ(Versions(), (std::vector<uint64_t>{1, 2}));
    // Destroyed without Commit: the writer's own directory goes away.
  }
  EXPECT_TRUE(fs::exists(root_ + "/.v000000000003.tmp-crashed"));
  EXPECT_EQ(Versions(), (std::vector<uint64_t>{1, 2}));
  EXPECT_EQ(ResolveChain(root_, 3).status().code(), StatusCode::kNotFound);
  ExpectAllVersionsValid();
  auto model = Materialize(root_, 2);
  ASSERT_TRUE(model.ok()) << model.status();

  // The restarted writer produces version 3; retention clears the leftover.
  WriteSimple(3, 2);
  EXPECT_EQ(Versions(), (std::vector<uint64_t>{1, 2, 3}));
  ASSERT_TRUE(ApplyRetention(root_, 1).ok());
  EXPECT_FALSE(fs::exists(root_ + "/.v000000000003.tmp-crashed"));
  EXPECT_EQ(Versions(), (std::vector<uint64_t>{1, 2, 3}));
}

TEST_F(ModelFormatTest, AbortAndDestructorRemoveTheTemporaryDirectory) {
  std::string temp;
  {
    auto w = VersionWriter::Begin(root_, 1, 0, true, kF32);
    ASSERT_TRUE(w.ok());
    temp = w->temp_dir();
    EXPECT_EQ(fs::path(temp).filename().string().rfind(".v000000000001.tmp-", 0), 0u) << temp;
    ASSERT_TRUE(w->AddSparse(MakeShard("emb", 0, 4, 0, {1}, 1)).ok());
    w->Abort();
    EXPECT_FALSE(fs::exists(temp));
    ExpectError(w->AddSparse(MakeShard("emb", 1, 4, 0, {1}, 1)), StatusCode::kFailedPrecondition,
                "aborted");
    ExpectError(w->Commit(Info({SparseSchema("emb", 4)})), StatusCode::kFailedPrecondition,
                "aborted");
  }
  {
    auto w = VersionWriter::Begin(root_, 1, 0, true, kF32);
    ASSERT_TRUE(w.ok());
    temp = w->temp_dir();
    VersionWriter moved = std::move(*w);  // the moved-from writer must not abort
    EXPECT_TRUE(fs::exists(temp));
    ASSERT_TRUE(moved.AddSparse(MakeShard("emb", 0, 4, 0, {1}, 1)).ok());
  }
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_TRUE(Versions().empty());
}

TEST_F(ModelFormatTest, SimulatedFullDiskLeavesPreviousVersionsValid) {
  WriteSimple(1, 0);
  WriteSimple(2, 1);
  const auto before = Versions();
  // Fail in the middle of a data file, then during Commit's manifest.
  for (uint64_t budget : {uint64_t{100}, uint64_t{2000}, uint64_t{64 + 8 * 200 + 4 * 800 + 10}}) {
    WriterOptions options;
    options.fail_after_bytes = budget;
    auto w = VersionWriter::Begin(root_, 3, 2, true, kF32, options);
    ASSERT_TRUE(w.ok());
    const std::string temp = w->temp_dir();
    std::vector<uint64_t> keys(200);
    for (uint64_t k = 0; k < 200; ++k) keys[k] = k;
    Status s = w->AddSparse(MakeShard("emb", 0, 4, 0, keys, 3));
    const uint64_t file_bytes = 64 + 200 * 8 + 200 * 4 * 4;
    EXPECT_EQ(s.ok(), budget >= file_bytes) << budget << ": " << s;
    if (s.ok()) {
      // The data fitted; the manifest does not.
      s = w->Commit(Info({SparseSchema("emb", 4)}));
      ExpectError(s, StatusCode::kResourceExhausted, "manifest.pb");
    } else {
      ExpectError(s, StatusCode::kResourceExhausted, temp + "/emb.s00000.eddy");
      ExpectError(w->AddSparse(MakeShard("emb", 1, 4, 0, {1}, 1)), StatusCode::kFailedPrecondition,
                  "No space left");
    }
    EXPECT_FALSE(fs::exists(temp)) << "a failed writer frees its space at once";
    EXPECT_EQ(Versions(), before);
    ExpectAllVersionsValid();
  }
  auto model = Materialize(root_, 2);
  ASSERT_TRUE(model.ok()) << model.status();
}

TEST_F(ModelFormatTest, UnwritableRootIsAnErrorNamingThePath) {
  if (::geteuid() == 0) GTEST_SKIP() << "root ignores directory permissions";
  WriteSimple(1, 0);
  fs::permissions(root_, fs::perms::owner_read | fs::perms::owner_exec);
  auto w = VersionWriter::Begin(root_, 2, 1, true, kF32);
  ExpectError(w.status(), StatusCode::kFailedPrecondition, root_);
  fs::permissions(root_, fs::perms::owner_all);
  ExpectAllVersionsValid();
}

TEST_F(ModelFormatTest, RootThatIsAFileIsAnErrorNamingThePath) {
  const std::string file = root_ + "/not-a-dir";
  WriteBytes(file, "x");
  auto w = VersionWriter::Begin(file, 1, 0, true, kF32);
  EXPECT_FALSE(w.ok());
  EXPECT_NE(w.status().message().find(file), std::string::npos) << w.status();
  EXPECT_FALSE(ListVersions(file).ok());
}

TEST_F(ModelFormatTest, BeginRefusesBadVersionsAndParents) {
  EXPECT_EQ(VersionWriter::Begin(root_, 0, 0, true, kF32).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(VersionWriter::Begin(root_, 5, 5, true, kF32).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(VersionWriter::Begin(root_, 5, 0, true, Manifest::ENCODING_UNSPECIFIED).status().code(),
            StatusCode::kInvalidArgument);
  ExpectError(VersionWriter::Begin(root_, 5, 4, true, kF32).status(),
              StatusCode::kFailedPrecondition, "parent version 4");
  WriteSimple(4, 0);
  EXPECT_EQ(VersionWriter::Begin(root_, 4, 0, true, kF32).status().code(),
            StatusCode::kAlreadyExists);
  ExpectError(VersionWriter::Begin(root_, 3, 0, true, kF32).status(),
              StatusCode::kFailedPrecondition, "increasing order");
  ExpectError(VersionWriter::Begin(root_, 5, 4, /*serving=*/false, kF32).status(),
              StatusCode::kFailedPrecondition, "checkpoint");
  // A second writer of the same version loses the race at Commit, cleanly.
  auto a = VersionWriter::Begin(root_, 5, 4, true, kF32);
  auto b = VersionWriter::Begin(root_, 5, 4, true, kF32);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_TRUE(a->AddSparse(MakeShard("emb", 0, 4, 0, {1}, 1)).ok());
  ASSERT_TRUE(b->AddSparse(MakeShard("emb", 0, 4, 0, {2}, 2)).ok());
  ASSERT_TRUE(a->Commit(Info({SparseSchema("emb", 4)})).ok());
  EXPECT_EQ(b->Commit(Info({SparseSchema("emb", 4)})).code(), StatusCode::kAlreadyExists);
  EXPECT_FALSE(fs::exists(b->temp_dir()));
  auto m = Materialize(root_, 5);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_FALSE(m->sparse.at("emb").Find(1).empty());
}

TEST_F(ModelFormatTest, CommitChecksSchemasAndTheWriterStaysUsable) {
  auto w = VersionWriter::Begin(root_, 1, 0, false, kF32);
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE(w->AddSparse(MakeShard("emb", 0, 4, 1, {1, 2}, 1)).ok());
  ASSERT_TRUE(w->AddDense(MakeSlice("w", 0, 0, 6, 0, 1.0f)).ok());
  ExpectError(w->AddSparse(MakeShard("emb", 0, 4, 1, {3}, 1)), StatusCode::kAlreadyExists,
              "shard 0");
  SparseShard wrong_size = MakeShard("emb", 1, 4, 1, {3}, 1);
  wrong_size.values.pop_back();
  EXPECT_EQ(w->AddSparse(wrong_size).code(), StatusCode::kInvalidArgument);
  SparseShard full_tombstones = MakeShard("emb", 1, 4, 1, {3}, 1);
  full_tombstones.tombstones = {9};
  ExpectError(w->AddSparse(full_tombstones), StatusCode::kInvalidArgument, "full version");

  ExpectError(w->Commit(Info({SparseSchema("emb", 4, 1)})), StatusCode::kInvalidArgument,
              "no table schema");
  ExpectError(w->Commit(Info({SparseSchema("emb", 8, 1), DenseSchema("w", {2, 3})})),
              StatusCode::kInvalidArgument, "dim 4");
  ExpectError(w->Commit(Info({SparseSchema("emb", 4, 2), DenseSchema("w", {2, 3})})),
              StatusCode::kInvalidArgument, "state floats");
  ExpectError(w->Commit(Info({SparseSchema("emb", 4, 1), DenseSchema("w", {2, 4})})),
              StatusCode::kInvalidArgument, "not fully covered");
  TableSchema f16 = SparseSchema("emb", 4, 1);
  f16.set_value_encoding(kF16);
  ExpectError(w->Commit(Info({f16, DenseSchema("w", {2, 3})})), StatusCode::kInvalidArgument,
              "float16");
  EXPECT_TRUE(Versions().empty());
  Status s = w->Commit(Info({SparseSchema("emb", 4, 1), DenseSchema("w", {2, 3})}));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(w->Commit(Info({})).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(Versions(), std::vector<uint64_t>{1});
}

TEST_F(ModelFormatTest, ShardsCanBeAddedConcurrently) {
  auto w = VersionWriter::Begin(root_, 1, 0, false, kF16);
  ASSERT_TRUE(w.ok());
  std::vector<std::thread> threads;
  std::vector<Status> results(8);
  for (uint32_t t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint64_t> keys;
      for (uint64_t k = 0; k < 300; ++k) keys.push_back(k * 8 + t);
      results[t] = w->AddSparse(MakeShard("emb", t, 8, 1, keys, t));
    });
  }
  for (auto& th : threads) th.join();
  for (const Status& s : results) ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(w->Commit(Info({SparseSchema("emb", 8, 1)})).ok());
  auto m = Materialize(root_, 1);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->sparse.at("emb").size(), 2400u);
}

}  // namespace
}  // namespace eddy::model_store
