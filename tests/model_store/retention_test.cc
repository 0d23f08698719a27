// Listing versions, retention, chains, pins and deleting one version.
#include "model_store/retention.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "model_store/chain.h"
#include "model_store/materialize.h"
#include "tests/model_store/model_store_test_util.h"

namespace eddy::model_store {
namespace {

namespace fs = std::filesystem;
using proto::Manifest;

// ---------------------------------------------------------------------------
// Listing, retention and chains.

TEST_F(ModelFormatTest, ListVersionsIgnoresTemporariesAndGarbage) {
  WriteSimple(2, 0);
  WriteSimple(10, 2);
  for (const char* dir : {"v1", "v0000000000001", "v000000000001x", "v000000000000", "notes",
                          ".v000000000011.tmp-abc", "V000000000005"}) {
    fs::create_directory(root_ + "/" + dir);
  }
  WriteBytes(root_ + "/v000000000007", "a file, not a version");
  EXPECT_EQ(Versions(), (std::vector<uint64_t>{2, 10}));
  EXPECT_EQ(ListVersions(root_ + "/absent").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(VersionDirName(42), "v000000000042");
  EXPECT_EQ(VersionDirName(1234567890123), "v1234567890123");
}

TEST_F(ModelFormatTest, RetentionKeepsNewestFullVersionsAndTheirDeltas) {
  // 1F <- 2 <- 3,  4F <- 5,  6F <- 7 <- 8 <- 9,  and 10, a delta of 5.
  WriteSimple(1, 0);
  WriteSimple(2, 1);
  WriteSimple(3, 2);
  WriteSimple(4, 0);
  WriteSimple(5, 4);
  WriteSimple(6, 0);
  WriteSimple(7, 6);
  WriteSimple(8, 7);
  WriteSimple(9, 8);
  WriteSimple(10, 5);
  fs::create_directory(root_ + "/.v000000000002.tmp-old");          // stale
  fs::create_directory(root_ + "/.v000000000011.tmp-live");         // a writer at work
  fs::create_directory(root_ + "/.v000000000001.del-interrupted");  // an interrupted delete
  fs::create_directory(root_ + "/unrelated");

  ASSERT_TRUE(ApplyRetention(root_, 2).ok());
  EXPECT_EQ(Versions(), (std::vector<uint64_t>{4, 5, 6, 7, 8, 9, 10}));
  EXPECT_FALSE(fs::exists(root_ + "/.v000000000002.tmp-old"));
  EXPECT_TRUE(fs::exists(root_ + "/.v000000000011.tmp-live"));
  EXPECT_FALSE(fs::exists(root_ + "/.v000000000001.del-interrupted"));
  EXPECT_TRUE(fs::exists(root_ + "/unrelated"));
  for (uint64_t v : {9, 10}) EXPECT_TRUE(Materialize(root_, v).ok()) << v;

  ASSERT_TRUE(ApplyRetention(root_, 1).ok());
  EXPECT_EQ(Versions(), (std::vector<uint64_t>{6, 7, 8, 9}));
  ExpectAllVersionsValid();
  EXPECT_TRUE(Materialize(root_, 9).ok());
  // Idempotent; the live temporary directory survives until it is old.
  ASSERT_TRUE(ApplyRetention(root_, 1).ok());
  EXPECT_EQ(Versions(), (std::vector<uint64_t>{6, 7, 8, 9}));
  EXPECT_TRUE(fs::exists(root_ + "/.v000000000011.tmp-live"));
  RetentionOptions aggressive;
  aggressive.keep_full = 1;
  aggressive.stale_temp_age = std::chrono::seconds(-1);
  ASSERT_TRUE(ApplyRetention(root_, aggressive).ok());
  EXPECT_FALSE(fs::exists(root_ + "/.v000000000011.tmp-live"));
  EXPECT_EQ(ApplyRetention(root_, 0).code(), StatusCode::kInvalidArgument);
}

TEST_F(ModelFormatTest, RetentionDropsDeltasWhoseChainIsBroken) {
  WriteSimple(1, 0);
  WriteSimple(2, 1);
  WriteSimple(3, 2);
  WriteSimple(4, 3);
  fs::remove_all(VersionDir(2));  // 3 and 4 can no longer be materialized
  ASSERT_TRUE(ApplyRetention(root_, 3).ok());
  EXPECT_EQ(Versions(), std::vector<uint64_t>{1});
}

TEST_F(ModelFormatTest, ResolveChainFollowsParentsAndNamesWhatIsMissing) {
  WriteSimple(1, 0);
  WriteSimple(2, 1);
  WriteSimple(3, 2);
  WriteSimple(5, 3);  // versions need not be consecutive
  WriteSimple(6, 0);
  auto chain = ResolveChain(root_, 5);
  ASSERT_TRUE(chain.ok()) << chain.status();
  EXPECT_EQ(*chain, (std::vector<uint64_t>{1, 2, 3, 5}));
  EXPECT_EQ(*ResolveChain(root_, 6), std::vector<uint64_t>{6});

  // A gap: version 4 was never committed.
  ExpectError(ResolveChain(root_, 4).status(), StatusCode::kNotFound, "version 4 is not committed");
  ExpectError(ResolveChain(root_, 4).status(), StatusCode::kNotFound, "newest below: 3");
  ExpectError(ResolveChain(root_, 4).status(), StatusCode::kNotFound, "oldest above: 5");

  // A missing delta inside the chain.
  fs::rename(VersionDir(2), root_ + "/moved-away");
  ExpectError(ResolveChain(root_, 5).status(), StatusCode::kNotFound, "needs delta 2");
  ExpectError(Materialize(root_, 5).status(), StatusCode::kNotFound, "needs delta 2");
  fs::rename(root_ + "/moved-away", VersionDir(2));

  // The full version at the root of the chain is gone.
  fs::remove_all(VersionDir(1));
  ExpectError(ResolveChain(root_, 3).status(), StatusCode::kNotFound, "needs full version 1");
  EXPECT_EQ(*ResolveChain(root_, 6), std::vector<uint64_t>{6});
}

// ---------------------------------------------------------------------------
// Pins, deletion and serving exports.

std::vector<uint64_t> Pins(const std::string& root) {
  auto p = ListPins(root);
  EXPECT_TRUE(p.ok()) << p.status();
  return p.ok() ? *p : std::vector<uint64_t>{};
}

TEST_F(ModelFormatTest, PinsAreDurableFilesAndIdempotent) {
  WriteSimple(1, 0);
  WriteSimple(2, 1);
  EXPECT_TRUE(Pins(root_).empty());
  ASSERT_TRUE(PinVersion(root_, 2).ok());
  ASSERT_TRUE(PinVersion(root_, 2).ok());  // no-op
  ASSERT_TRUE(PinVersion(root_, 1).ok());
  EXPECT_EQ(Pins(root_), (std::vector<uint64_t>{1, 2}));
  EXPECT_TRUE(fs::is_regular_file(root_ + "/pins/v000000000002"));
  EXPECT_EQ(Versions(), (std::vector<uint64_t>{1, 2}));  // pins/ is not a version
  ExpectError(PinVersion(root_, 3), StatusCode::kNotFound, "versions there: 1, 2");
  ASSERT_TRUE(UnpinVersion(root_, 1).ok());
  EXPECT_EQ(Pins(root_), std::vector<uint64_t>{2});
  ExpectError(UnpinVersion(root_, 1), StatusCode::kNotFound, "pinned: 2");
  EXPECT_EQ(ListPins(root_ + "/absent").status().code(), StatusCode::kNotFound);
  EXPECT_EQ(PinVersion(root_ + "/absent", 1).code(), StatusCode::kNotFound);
}

TEST_F(ModelFormatTest, RetentionKeepsPinnedVersionsAndTheChainsTheyNeed) {
  // 1F <- 2 <- 3,  4F <- 5,  6F <- 7,  8F.
  WriteSimple(1, 0);
  WriteSimple(2, 1);
  WriteSimple(3, 2);
  WriteSimple(4, 0);
  WriteSimple(5, 4);
  WriteSimple(6, 0);
  WriteSimple(7, 6);
  WriteSimple(8, 0);
  ASSERT_TRUE(PinVersion(root_, 2).ok());  // needs 1; 3 is not needed
  ASSERT_TRUE(PinVersion(root_, 4).ok());  // a full one; 5 is not needed
  ASSERT_TRUE(ApplyRetention(root_, 1).ok());
  EXPECT_EQ(Versions(), (std::vector<uint64_t>{1, 2, 4, 8}));
  EXPECT_TRUE(Materialize(root_, 2).ok());
  ExpectAllVersionsValid();
  ASSERT_TRUE(UnpinVersion(root_, 2).ok());
  ASSERT_TRUE(ApplyRetention(root_, 1).ok());
  EXPECT_EQ(Versions(), (std::vector<uint64_t>{4, 8}));
  EXPECT_EQ(Pins(root_), std::vector<uint64_t>{4});
}

TEST_F(ModelFormatTest, DeleteRefusesPinnedVersionsAndParentsOfKeptDeltas) {
  WriteSimple(1, 0);
  WriteSimple(2, 1);
  WriteSimple(3, 2);
  WriteSimple(4, 0);
  ASSERT_TRUE(PinVersion(root_, 4).ok());
  ExpectError(DeleteVersion(root_, 4), StatusCode::kFailedPrecondition, "version 4 is pinned");
  ExpectError(DeleteVersion(root_, 1), StatusCode::kFailedPrecondition,
              "needed by the chain of version(s) 2, 3");
  ExpectError(DeleteVersion(root_, 2), StatusCode::kFailedPrecondition,
              "needed by the chain of version(s) 3");
  ExpectError(DeleteVersion(root_, 9), StatusCode::kNotFound, "versions there: 1, 2, 3, 4");
  EXPECT_EQ(Versions(), (std::vector<uint64_t>{1, 2, 3, 4}));
  // Deleting from the newest end works, and leaves no directory behind.
  ASSERT_TRUE(DeleteVersion(root_, 3).ok());
  ASSERT_TRUE(DeleteVersion(root_, 2).ok());
  ASSERT_TRUE(DeleteVersion(root_, 1).ok());
  EXPECT_EQ(Versions(), std::vector<uint64_t>{4});
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(root_)) ++entries;
  EXPECT_EQ(entries, 2u);  // v000000000004 and pins/
  ASSERT_TRUE(UnpinVersion(root_, 4).ok());
  ASSERT_TRUE(DeleteVersion(root_, 4).ok());
  EXPECT_TRUE(Versions().empty());
}

TEST_F(ModelFormatTest, DeleteRefusesWhenANewerManifestIsUnreadable) {
  WriteSimple(1, 0);
  WriteSimple(2, 1);
  WriteBytes(VersionDir(2) + "/manifest.pb", "garbage");
  ExpectError(DeleteVersion(root_, 1), StatusCode::kFailedPrecondition, "manifest cannot be read");
  ASSERT_TRUE(DeleteVersion(root_, 2).ok());
  ASSERT_TRUE(DeleteVersion(root_, 1).ok());
}

TEST_F(ModelFormatTest, DeltaCommitFailsWhenItsParentWasDeleted) {
  WriteSimple(1, 0);
  auto w = VersionWriter::Begin(root_, 2, 1, /*serving=*/true, kF32);
  ASSERT_TRUE(w.ok()) << w.status();
  ASSERT_TRUE(w->AddSparse(MakeShard("emb", 0, 4, 0, {1}, 1)).ok());
  ASSERT_TRUE(DeleteVersion(root_, 1).ok());
  ExpectError(w->Commit(Info({SparseSchema("emb", 4)})), StatusCode::kFailedPrecondition,
              "parent version 1");
  EXPECT_TRUE(Versions().empty());
}

}  // namespace
}  // namespace eddy::model_store
