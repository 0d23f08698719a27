// VersionReader on damaged versions: corrupt, missing and truncated files,
// hostile headers and broken manifests are errors, never crashes.
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "model_store/crc32c.h"
#include "tests/model_store/model_store_test_util.h"

namespace eddy::model_store {
namespace {

namespace fs = std::filesystem;
using proto::Manifest;

// ---------------------------------------------------------------------------
// Corruption.

TEST_F(ModelFormatTest, CorruptByteFailsVerifyNamingTheFile) {
  WriteSimple(1, 0);
  auto r = VersionReader::Open(VersionDir(1));
  ASSERT_TRUE(r.ok()) << r.status();
  const FileEntry f = r->manifest().files(1);
  const std::string path = VersionDir(1) + "/" + f.path();
  std::string b = ReadBytes(path);
  b[b.size() - 3] ^= 0x10;  // a value byte
  WriteBytes(path, b);
  Status s = r->Verify();
  ExpectError(s, StatusCode::kDataLoss, path);
  EXPECT_NE(s.message().find("CRC32C"), std::string::npos) << s;
  ExpectError(r->ReadSparse(f).status(), StatusCode::kDataLoss, "CRC32C");
  // Without the checksum the bytes decode (a value changed), header still checked.
  EXPECT_TRUE(r->ReadSparse(f, {.verify_checksum = false}).ok());
  // The other file is fine.
  EXPECT_TRUE(r->ReadSparse(r->manifest().files(0)).ok());
}

TEST_F(ModelFormatTest, MissingFileFailsVerify) {
  WriteSimple(1, 0);
  auto r = VersionReader::Open(VersionDir(1));
  ASSERT_TRUE(r.ok());
  const std::string path = VersionDir(1) + "/" + r->manifest().files(0).path();
  fs::remove(path);
  ExpectError(r->Verify(), StatusCode::kDataLoss, path);
  ExpectError(r->ReadSparse(r->manifest().files(0)).status(), StatusCode::kDataLoss, "missing");
}

TEST_F(ModelFormatTest, TruncatedFileIsDataLossAtEveryLength) {
  auto w = VersionWriter::Begin(root_, 1, 0, false, kI8);
  ASSERT_TRUE(w.ok());
  SparseShard s = MakeShard("emb", 0, 3, 1, {1, 2, 3}, 5);
  s.tombstones = {};
  ASSERT_TRUE(w->AddSparse(s).ok());
  ASSERT_TRUE(w->Commit(Info({SparseSchema("emb", 3, 1)})).ok());
  auto r = VersionReader::Open(VersionDir(1));
  ASSERT_TRUE(r.ok());
  const FileEntry f = r->manifest().files(0);
  const std::string path = VersionDir(1) + "/" + f.path();
  const std::string good = ReadBytes(path);
  for (size_t len = 0; len < good.size(); ++len) {
    WriteBytes(path, good.substr(0, len));
    for (bool verify : {true, false}) {
      auto got = r->ReadSparse(f, {.verify_checksum = verify});
      ASSERT_EQ(got.status().code(), StatusCode::kDataLoss) << len << " " << got.status();
      ASSERT_NE(got.status().message().find(path), std::string::npos) << got.status();
    }
    // Even with the manifest adjusted to the short size the layout check catches it.
    FileEntry lying = f;
    lying.set_bytes(len);
    auto got = r->ReadSparse(lying, {.verify_checksum = false});
    ASSERT_EQ(got.status().code(), StatusCode::kDataLoss) << len << " " << got.status();
  }
  WriteBytes(path, good);
  EXPECT_TRUE(r->ReadSparse(f).ok());
}

TEST_F(ModelFormatTest, HeaderClaimingHugeCountsIsDataLossWithoutAllocating) {
  WriteSimple(1, 0);
  auto r = VersionReader::Open(VersionDir(1));
  ASSERT_TRUE(r.ok());
  const FileEntry f = r->manifest().files(0);
  const std::string path = VersionDir(1) + "/" + f.path();
  const std::string good = ReadBytes(path);
  for (uint64_t rows : {uint64_t{1} << 40, uint64_t{1} << 61, ~uint64_t{0}}) {
    std::string b = good;
    std::memcpy(b.data() + 32, &rows, 8);
    const uint32_t crc = Crc32c(std::string_view(b.data(), 60));
    std::memcpy(b.data() + 60, &crc, 4);  // a consistent header
    WriteBytes(path, b);
    FileEntry lying = f;
    lying.set_rows(rows);
    auto got = r->ReadSparse(lying, {.verify_checksum = false});
    ExpectError(got.status(), StatusCode::kDataLoss, path);
  }
}

TEST_F(ModelFormatTest, RandomByteFlipsNeverCrashTheDecoder) {
  auto w = VersionWriter::Begin(root_, 1, 0, false, kI8);
  ASSERT_TRUE(w.ok());
  SparseShard s = MakeShard("emb", 0, 4, 2, {4, 5, 6, 7, 8}, 6);
  ASSERT_TRUE(w->AddSparse(s).ok());
  ASSERT_TRUE(w->Commit(Info({SparseSchema("emb", 4, 2)})).ok());
  auto r = VersionReader::Open(VersionDir(1));
  ASSERT_TRUE(r.ok());
  const FileEntry f = r->manifest().files(0);
  const std::string path = VersionDir(1) + "/" + f.path();
  const std::string good = ReadBytes(path);
  std::mt19937 rng(11);
  for (int i = 0; i < 300; ++i) {
    std::string b = good;
    for (int k = 0; k < 1 + i % 4; ++k) b[rng() % b.size()] = static_cast<char>(rng());
    WriteBytes(path, b);
    auto got = r->ReadSparse(f, {.verify_checksum = false});
    if (!got.ok()) {
      ASSERT_EQ(got.status().code(), StatusCode::kDataLoss) << got.status();
    }
    if (b != good) {
      EXPECT_FALSE(r->ReadSparse(f).ok());
    }
  }
}

TEST_F(ModelFormatTest, ManifestFromANewerFormatIsRefused) {
  WriteSimple(1, 0);
  const std::string path = VersionDir(1) + "/manifest.pb";
  Manifest m;
  ASSERT_TRUE(m.ParseFromString(ReadBytes(path)));
  m.set_format_version(kModelFormatVersion + 1);
  WriteBytes(path, m.SerializeAsString());
  auto r = VersionReader::Open(VersionDir(1));
  ExpectError(r.status(), StatusCode::kFailedPrecondition, "newer than this reader supports");
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status();
}

TEST_F(ModelFormatTest, BrokenManifestsAreDataLoss) {
  WriteSimple(3, 0);
  const std::string path = VersionDir(3) + "/manifest.pb";
  const std::string good = ReadBytes(path);
  Manifest m;
  ASSERT_TRUE(m.ParseFromString(good));

  WriteBytes(path, "");
  ExpectError(VersionReader::Open(VersionDir(3)).status(), StatusCode::kDataLoss, "empty");
  WriteBytes(path, "\xff\xff\xff garbage");
  ExpectError(VersionReader::Open(VersionDir(3)).status(), StatusCode::kDataLoss, "parse");
  Manifest wrong = m;
  wrong.set_version(4);
  wrong.set_base_version(4);
  WriteBytes(path, wrong.SerializeAsString());
  ExpectError(VersionReader::Open(VersionDir(3)).status(), StatusCode::kDataLoss, "version 4");
  Manifest no_tables = m;
  no_tables.clear_tables();
  WriteBytes(path, no_tables.SerializeAsString());
  ExpectError(VersionReader::Open(VersionDir(3)).status(), StatusCode::kDataLoss, "no tables");
  Manifest escaping = m;
  escaping.mutable_files(0)->set_path("../v000000000001/x");
  WriteBytes(path, escaping.SerializeAsString());
  ExpectError(VersionReader::Open(VersionDir(3)).status(), StatusCode::kDataLoss, "relative");
  fs::remove(path);
  ExpectError(VersionReader::Open(VersionDir(3)).status(), StatusCode::kDataLoss, "missing");
  EXPECT_EQ(VersionReader::Open(VersionDir(9)).status().code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace eddy::model_store
