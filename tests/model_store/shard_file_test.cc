// Data files: round trips of sparse and dense shards in every encoding, with
// and without optimizer state, and the documented header layout.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "model_store/crc32c.h"
#include "model_store/internal/encoding.h"
#include "tests/model_store/model_store_test_util.h"

namespace eddy::model_store {
namespace {

namespace fs = std::filesystem;
using proto::Manifest;

// ---------------------------------------------------------------------------
// Round trips.

TEST_F(ModelFormatTest, CheckpointRoundTripWithStateIsExact) {
  auto w = VersionWriter::Begin(root_, 7, 0, /*serving=*/false, kF32);
  ASSERT_TRUE(w.ok()) << w.status();
  const SparseShard s0 = MakeShard("emb", 0, 8, 1, {5, 9, 1ull << 63, 42}, 1);
  const SparseShard s1 = MakeShard("emb", 1, 8, 1, {}, 2);  // an empty shard
  const DenseSlice d0 = MakeSlice("mlp", 0, 0, 7, 2, 0.5f);
  const DenseSlice d1 = MakeSlice("mlp", 1, 7, 5, 2, 0.5f);
  ASSERT_TRUE(w->AddSparse(s0).ok());
  ASSERT_TRUE(w->AddSparse(s1).ok());
  ASSERT_TRUE(w->AddDense(d0).ok());
  ASSERT_TRUE(w->AddDense(d1).ok());
  VersionInfo info = Info({SparseSchema("emb", 8, 1), DenseSchema("mlp", {3, 4}, 2)});
  StreamPosition p;
  p.set_worker(3);
  p.set_rows_consumed(123456);
  p.set_source_state("file=a.tsv;offset=999");
  info.positions.push_back(p);
  info.metrics["auc"] = 0.78;
  Status s = w->Commit(info);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(w->final_dir(), VersionDir(7));
  EXPECT_FALSE(fs::exists(w->temp_dir()));

  auto r = VersionReader::Open(VersionDir(7));
  ASSERT_TRUE(r.ok()) << r.status();
  const Manifest& m = r->manifest();
  EXPECT_EQ(m.format_version(), kModelFormatVersion);
  EXPECT_EQ(m.version(), 7u);
  EXPECT_EQ(m.parent_version(), 0u);
  EXPECT_EQ(m.base_version(), 7u);
  EXPECT_EQ(m.kind(), Manifest::KIND_FULL);
  EXPECT_FALSE(m.serving());
  EXPECT_EQ(m.created_unix_ms(), 1700000000000);
  ASSERT_EQ(m.positions_size(), 1);
  EXPECT_EQ(m.positions(0).rows_consumed(), 123456u);
  EXPECT_EQ(m.positions(0).source_state(), "file=a.tsv;offset=999");
  EXPECT_DOUBLE_EQ(m.metrics().at("auc"), 0.78);
  EXPECT_EQ(r->FindTable("emb")->value_encoding(), kF32);
  EXPECT_EQ(r->FindTable("mlp")->value_encoding(), kF32);
  ASSERT_EQ(m.files_size(), 4);
  ASSERT_TRUE(r->Verify().ok());

  for (const FileEntry& f : m.files()) {
    EXPECT_EQ(f.bytes(), fs::file_size(VersionDir(7) + "/" + f.path()));
    if (f.table() == "emb") {
      auto got = r->ReadSparse(f);
      ASSERT_TRUE(got.ok()) << got.status();
      const SparseShard& want = f.shard() == 0 ? s0 : s1;
      EXPECT_EQ(got->table, "emb");
      EXPECT_EQ(got->shard, want.shard);
      EXPECT_EQ(got->dim, 8u);
      EXPECT_EQ(got->state_floats, 1u);
      EXPECT_EQ(got->keys, want.keys);
      EXPECT_EQ(got->values, want.values);
      EXPECT_EQ(got->state, want.state);
      EXPECT_TRUE(got->tombstones.empty());
    } else {
      auto got = r->ReadDense(f);
      ASSERT_TRUE(got.ok()) << got.status();
      const DenseSlice& want = f.shard() == 0 ? d0 : d1;
      EXPECT_EQ(got->offset, want.offset);
      EXPECT_EQ(got->state_floats, 2u);
      EXPECT_EQ(got->values, want.values);
      EXPECT_EQ(got->state, want.state);
      EXPECT_EQ(r->ReadSparse(f).status().code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST_F(ModelFormatTest, ServingVersionDropsStateAndKeepsValues) {
  auto w = VersionWriter::Begin(root_, 1, 0, /*serving=*/true, kF32);
  ASSERT_TRUE(w.ok()) << w.status();
  const SparseShard s0 = MakeShard("emb", 0, 3, 2, {1, 2}, 1);
  ASSERT_TRUE(w->AddSparse(s0).ok());
  ASSERT_TRUE(w->AddDense(MakeSlice("bias", 0, 0, 1, 1, 2.0f)).ok());
  // The schema of a serving version says 0 state floats.
  Status s = w->Commit(Info({SparseSchema("emb", 3, 0), DenseSchema("bias", {1}, 0)}));
  ASSERT_TRUE(s.ok()) << s;
  auto r = VersionReader::Open(VersionDir(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->manifest().serving());
  for (const FileEntry& f : r->manifest().files()) {
    if (f.table() != "emb") continue;
    auto got = r->ReadSparse(f);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->values, s0.values);
    EXPECT_EQ(got->state_floats, 0u);
    EXPECT_TRUE(got->state.empty());
  }
}

TEST_F(ModelFormatTest, Float16WithinRelativeErrorAndOverflowRefused) {
  auto w = VersionWriter::Begin(root_, 1, 0, true, kF16);
  ASSERT_TRUE(w.ok()) << w.status();
  SparseShard s = MakeShard("emb", 0, 16, 0, {}, 3);
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> exponent(-10.0f, 15.0f);
  for (uint64_t k = 0; k < 500; ++k) {
    s.keys.push_back(k);
    for (int j = 0; j < 16; ++j) s.values.push_back(std::exp2(exponent(rng)) * (j % 2 ? -1 : 1));
  }
  SparseShard too_big = MakeShard("emb", 0, 16, 0, {1}, 3);
  too_big.values[5] = 70000.0f;
  ExpectError(w->AddSparse(too_big), StatusCode::kInvalidArgument, "float16 range");
  ASSERT_TRUE(w->AddSparse(s).ok());  // the refused shard claimed nothing
  ASSERT_TRUE(w->Commit(Info({SparseSchema("emb", 16)})).ok());

  auto r = VersionReader::Open(VersionDir(1));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->FindTable("emb")->value_encoding(), kF16);
  auto got = r->ReadSparse(r->manifest().files(0));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->values.size(), s.values.size());
  for (size_t i = 0; i < s.values.size(); ++i) {
    ASSERT_LE(std::fabs(got->values[i] - s.values[i]), std::fabs(s.values[i]) * 0x1p-11f) << i;
  }
  // Half the bytes of float32 for values: 64 header + keys + 2 bytes per value.
  EXPECT_EQ(r->manifest().files(0).bytes(), 64 + 500 * 8 + 500 * 16 * 2);
}

TEST_F(ModelFormatTest, Int8ErrorIsAtMostHalfTheRowScale) {
  auto w = VersionWriter::Begin(root_, 1, 0, true, kI8);
  ASSERT_TRUE(w.ok()) << w.status();
  SparseShard s = MakeShard("emb", 0, 9, 0, {}, 4);
  std::mt19937 rng(4);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (uint64_t k = 0; k < 1000; ++k) {
    s.keys.push_back(k * 7919);
    const float row_scale = std::exp2(static_cast<float>(k % 40) - 20.0f);
    for (int j = 0; j < 9; ++j) s.values.push_back(k == 3 ? 0.0f : normal(rng) * row_scale);
  }
  // A row of subnormals: its scale must not underflow to zero.
  for (int j = 0; j < 9; ++j) s.values[9 * 5 + j] = j == 2 ? 1e-44f : 0.0f;
  SparseShard bad = MakeShard("emb", 1, 9, 0, {1}, 4);
  bad.values[0] = std::numeric_limits<float>::infinity();
  ExpectError(w->AddSparse(bad), StatusCode::kInvalidArgument, "int8");
  ASSERT_TRUE(w->AddSparse(s).ok());
  ASSERT_TRUE(w->Commit(Info({SparseSchema("emb", 9)})).ok());

  auto r = VersionReader::Open(VersionDir(1));
  ASSERT_TRUE(r.ok()) << r.status();
  auto got = r->ReadSparse(r->manifest().files(0));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->values.size(), s.values.size());
  for (size_t row = 0; row < s.keys.size(); ++row) {
    float max_abs = 0;
    for (int j = 0; j < 9; ++j) max_abs = std::max(max_abs, std::fabs(s.values[row * 9 + j]));
    const float scale = max_abs / 127.0f;
    for (int j = 0; j < 9; ++j) {
      const size_t i = row * 9 + j;
      // scale/2 from rounding to the nearest code; the slack covers float
      // rounding of code * scale (at most 127 * scale * 2^-24) and of the scale.
      const float bound = scale * (0.5f + 0x1p-15f) + std::numeric_limits<float>::denorm_min();
      ASSERT_LE(std::fabs(got->values[i] - s.values[i]), bound) << "row " << row << " col " << j;
    }
  }
  for (int j = 0; j < 9; ++j) EXPECT_EQ(got->values[3 * 9 + j], 0.0f);
  // 64 header + keys + scales (padded) + codes (padded).
  EXPECT_EQ(r->manifest().files(0).bytes(), 64 + 8000 + 4000 + 9000);
}

// The header layout documented in docs/model_format.md, byte by byte.
TEST_F(ModelFormatTest, DataFileHeaderMatchesTheDocumentedLayout) {
  auto w = VersionWriter::Begin(root_, 1, 0, false, kF16);
  ASSERT_TRUE(w.ok()) << w.status();
  SparseShard s = MakeShard("my table/x", 3, 5, 2, {0x0102030405060708ull, 77}, 9);
  ASSERT_TRUE(w->AddSparse(s).ok());
  ASSERT_TRUE(w->Commit(Info({SparseSchema("my table/x", 5, 2)})).ok());
  auto r = VersionReader::Open(VersionDir(1));
  ASSERT_TRUE(r.ok()) << r.status();
  const FileEntry& f = r->manifest().files(0);
  EXPECT_EQ(f.path(), "my%20table%2Fx.s00003.eddy");
  const std::string b = ReadBytes(VersionDir(1) + "/" + f.path());
  auto u32 = [&](size_t at) {
    uint32_t v;
    std::memcpy(&v, b.data() + at, 4);
    return v;
  };
  auto u64 = [&](size_t at) {
    uint64_t v;
    std::memcpy(&v, b.data() + at, 8);
    return v;
  };
  ASSERT_EQ(b.size(), f.bytes());
  EXPECT_EQ(b.substr(0, 8), "EDDYSHRD");
  EXPECT_EQ(u32(8), 1u);                        // format version
  EXPECT_EQ(b[12], 1);                          // layout: sparse
  EXPECT_EQ(b[13], 2);                          // encoding: float16
  EXPECT_EQ(u32(16), 3u);                       // shard
  EXPECT_EQ(u32(20), 5u);                       // dim
  EXPECT_EQ(u32(24), 2u);                       // state floats
  EXPECT_EQ(u64(32), 2u);                       // rows
  EXPECT_EQ(u64(40), 0u);                       // tombstones
  EXPECT_EQ(u64(48), 0u);                       // offset
  EXPECT_EQ(u32(60), Crc32c(b.substr(0, 60)));  // header CRC32C
  EXPECT_EQ(u64(64), 0x0102030405060708ull);    // first key, little-endian
  EXPECT_EQ(u64(72), 77u);
  // Values: 10 halves = 20 bytes at 80, padded to 24; state: 4 floats at 104.
  uint16_t h0;
  std::memcpy(&h0, b.data() + 80, 2);
  EXPECT_EQ(h0, internal::FloatToHalf(s.values[0]));
  for (size_t i = 100; i < 104; ++i) EXPECT_EQ(b[i], 0) << i;
  float st0;
  std::memcpy(&st0, b.data() + 104, 4);
  EXPECT_EQ(st0, s.state[0]);
  EXPECT_EQ(b.size(), 104u + 16u);
  EXPECT_EQ(Crc32c(b), f.crc32c());
}

}  // namespace
}  // namespace eddy::model_store
