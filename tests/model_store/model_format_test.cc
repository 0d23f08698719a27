#include "model_store/model_format.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "model_store/crc32c.h"

namespace eddy::model_store {
namespace {

namespace fs = std::filesystem;
using proto::Manifest;

constexpr Encoding kF32 = Manifest::ENCODING_FLOAT32;
constexpr Encoding kF16 = Manifest::ENCODING_FLOAT16;
constexpr Encoding kI8 = Manifest::ENCODING_INT8_ROW_SCALE;

// ---------------------------------------------------------------------------
// Helpers.

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

TableSchema SparseSchema(const std::string& name, uint32_t dim, uint32_t state_floats = 0) {
  TableSchema t;
  t.set_name(name);
  t.set_dim(dim);
  t.set_optimizer("adagrad");
  t.set_state_floats_per_value(state_floats);
  return t;
}

TableSchema DenseSchema(const std::string& name, std::vector<uint64_t> shape,
                        uint32_t state_floats = 0) {
  TableSchema t;
  t.set_name(name);
  t.set_dense(true);
  for (uint64_t d : shape) t.add_shape(d);
  t.set_optimizer("adam");
  t.set_state_floats_per_value(state_floats);
  return t;
}

// Rows with values derived from (key, seed) so expectations can be recomputed.
SparseShard MakeShard(const std::string& table, uint32_t shard, uint32_t dim, uint32_t state_floats,
                      std::vector<uint64_t> keys, uint32_t seed) {
  SparseShard s;
  s.table = table;
  s.shard = shard;
  s.dim = dim;
  s.state_floats = state_floats;
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.5f);
  for (size_t i = 0; i < keys.size(); ++i) {
    for (uint32_t j = 0; j < dim; ++j) s.values.push_back(normal(rng));
    for (uint32_t j = 0; j < state_floats; ++j) s.state.push_back(std::fabs(normal(rng)));
  }
  s.keys = std::move(keys);
  return s;
}

DenseSlice MakeSlice(const std::string& table, uint32_t shard, uint64_t offset, size_t n,
                     uint32_t state_floats, float base) {
  DenseSlice d;
  d.table = table;
  d.shard = shard;
  d.offset = offset;
  d.state_floats = state_floats;
  for (size_t i = 0; i < n; ++i) d.values.push_back(base + static_cast<float>(offset + i));
  for (size_t i = 0; i < n * state_floats; ++i) d.state.push_back(-base - static_cast<float>(i));
  return d;
}

VersionInfo Info(std::vector<TableSchema> tables) {
  VersionInfo info;
  info.tables = std::move(tables);
  info.created_unix_ms = 1700000000000;
  return info;
}

class ModelFormatTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "eddy_model_format_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    root_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(root_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(root_, ec);
  }

  std::string VersionDir(uint64_t v) const { return root_ + "/" + VersionDirName(v); }

  // Writes a version with one sparse table "emb" (dim 4) over two shards.
  void WriteSimple(uint64_t version, uint64_t parent, std::vector<uint64_t> keys0 = {1, 2, 3},
                   std::vector<uint64_t> keys1 = {10, 11}, std::vector<uint64_t> tombstones = {}) {
    auto w = VersionWriter::Begin(root_, version, parent, /*serving=*/true, kF32);
    ASSERT_TRUE(w.ok()) << w.status();
    SparseShard s0 = MakeShard("emb", 0, 4, 0, keys0, static_cast<uint32_t>(version));
    s0.tombstones = tombstones;
    ASSERT_TRUE(w->AddSparse(s0).ok());
    ASSERT_TRUE(
        w->AddSparse(MakeShard("emb", 1, 4, 0, keys1, static_cast<uint32_t>(1000 + version))).ok());
    Status s = w->Commit(Info({SparseSchema("emb", 4)}));
    ASSERT_TRUE(s.ok()) << s;
  }

  std::vector<uint64_t> Versions() const {
    auto v = ListVersions(root_);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : std::vector<uint64_t>{};
  }

  // Every committed version opens and verifies.
  void ExpectAllVersionsValid() const {
    for (uint64_t v : Versions()) {
      auto r = VersionReader::Open(VersionDir(v));
      ASSERT_TRUE(r.ok()) << r.status();
      Status s = r->Verify();
      EXPECT_TRUE(s.ok()) << s;
    }
  }

  std::string root_;
};

void ExpectError(const Status& s, StatusCode code, const std::string& words) {
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_NE(s.message().find(words), std::string::npos)
      << "'" << s.message() << "' does not mention '" << words << "'";
}

// ---------------------------------------------------------------------------
// CRC32C and encodings.

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  // RFC 3720 (iSCSI) B.4 test vectors.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
}

TEST(Crc32cTest, ExtendEqualsWholeAtEverySplit) {
  std::string data;
  for (int i = 0; i < 100; ++i) data.push_back(static_cast<char>(i * 37 + 11));
  const uint32_t whole = Crc32c(data);
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    const std::string_view a(data.data(), cut), b(data.data() + cut, data.size() - cut);
    EXPECT_EQ(Crc32cExtend(Crc32c(a), std::as_bytes(std::span(b.data(), b.size()))), whole);
  }
}

TEST(HalfTest, ExactValuesRoundTripAndRoundingIsToNearestEven) {
  for (float x : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f /* 2^-14 */,
                  5.9604645e-08f /* 2^-24, smallest subnormal */, 0.333251953125f}) {
    EXPECT_EQ(internal::HalfToFloat(internal::FloatToHalf(x)), x) << x;
  }
  EXPECT_EQ(internal::FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(internal::FloatToHalf(-2.0f), 0xC000);
  EXPECT_EQ(internal::FloatToHalf(65504.0f), 0x7BFF);
  // Halfway between 1 and 1 + 2^-10 rounds to even (1); 1 + 3 * 2^-11 rounds up.
  EXPECT_EQ(internal::FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(internal::FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(internal::FloatToHalf(65520.0f), 0x7C00);  // first value that rounds to inf
  EXPECT_EQ(internal::FloatToHalf(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_TRUE(std::isnan(internal::HalfToFloat(internal::FloatToHalf(std::nanf("")))));
  EXPECT_EQ(internal::FloatToHalf(1e-9f), 0x0000);  // underflows to zero
}

TEST(HalfTest, ErrorIsWithinHalfAnUlp) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-20.0f, 15.9f);
  for (int i = 0; i < 100000; ++i) {
    const float x = std::exp2(exponent(rng)) * (i % 2 ? 1.0f : -1.0f);
    const float y = internal::HalfToFloat(internal::FloatToHalf(x));
    // Normal halves: 11 significant bits; subnormals: absolute step 2^-24.
    const float bound = std::max(std::fabs(x) * std::ldexp(1.0f, -11), std::ldexp(1.0f, -25));
    ASSERT_LE(std::fabs(x - y), bound) << x << " -> " << y;
  }
}

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
// Materialization.

// Applies a shard to an expected-state map (tombstones first, as the format says).
void ApplyExpected(const SparseShard& s, std::map<uint64_t, std::vector<float>>* rows) {
  for (uint64_t k : s.tombstones) rows->erase(k);
  for (size_t i = 0; i < s.keys.size(); ++i) {
    (*rows)[s.keys[i]].assign(s.values.begin() + i * s.dim, s.values.begin() + (i + 1) * s.dim);
  }
}

TEST_F(ModelFormatTest, MaterializeFullPlusDeltasWithTombstones) {
  std::map<uint64_t, std::vector<float>> expected;
  std::vector<float> expected_dense(10);
  const std::vector<TableSchema> schemas = {SparseSchema("emb", 3, 1), DenseSchema("w", {10}, 1)};
  auto write = [&](uint64_t version, uint64_t parent, std::vector<SparseShard> shards,
                   std::vector<DenseSlice> slices) {
    auto w = VersionWriter::Begin(root_, version, parent, false, kF32);
    ASSERT_TRUE(w.ok()) << w.status();
    for (const auto& s : shards) {
      ASSERT_TRUE(w->AddSparse(s).ok());
      ApplyExpected(s, &expected);
    }
    for (const auto& d : slices) {
      ASSERT_TRUE(w->AddDense(d).ok());
      std::copy(d.values.begin(), d.values.end(), expected_dense.begin() + d.offset);
    }
    Status st = w->Commit(Info(schemas));
    ASSERT_TRUE(st.ok()) << st;
  };
  // Full: keys 0..19 over two shards (even / odd), dense [0,6) + [6,10).
  std::vector<uint64_t> even, odd;
  for (uint64_t k = 0; k < 20; ++k) (k % 2 ? odd : even).push_back(k);
  write(1, 0, {MakeShard("emb", 0, 3, 1, even, 1), MakeShard("emb", 1, 3, 1, odd, 2)},
        {MakeSlice("w", 0, 0, 6, 1, 0.0f), MakeSlice("w", 1, 6, 4, 1, 0.0f)});
  // Delta 1: update 2 and 3, add 100 and 101, delete 4 and 5; server 1's slice changes.
  SparseShard d1s0 = MakeShard("emb", 0, 3, 1, {2, 100}, 3);
  d1s0.tombstones = {4};
  SparseShard d1s1 = MakeShard("emb", 1, 3, 1, {3, 101}, 4);
  d1s1.tombstones = {5, 999 /* never existed */};
  write(2, 1, {d1s0, d1s1}, {MakeSlice("w", 1, 6, 4, 1, 50.0f)});
  // Delta 2: delete 100 and re-add 4 (deleted in delta 1); only shard 0 changed.
  SparseShard d2s0 = MakeShard("emb", 0, 3, 1, {4}, 5);
  d2s0.tombstones = {100};
  write(3, 2, {d2s0}, {});

  auto model = Materialize(root_, 3);
  ASSERT_TRUE(model.ok()) << model.status();
  EXPECT_EQ(model->chain, (std::vector<uint64_t>{1, 2, 3}));
  EXPECT_EQ(model->manifest.version(), 3u);
  const SparseRows& rows = model->sparse.at("emb");
  ASSERT_EQ(rows.size(), expected.size());
  EXPECT_EQ(expected.size(), 20u + 2 - 2 - 1 + 1);
  EXPECT_TRUE(rows.Find(5).empty());
  EXPECT_TRUE(rows.Find(100).empty());
  EXPECT_FALSE(rows.Find(4).empty());
  for (const auto& [key, values] : expected) {
    auto got = rows.Find(key);
    ASSERT_EQ(std::vector<float>(got.begin(), got.end()), values) << key;
    EXPECT_EQ(rows.FindState(key).size(), 1u);
  }
  EXPECT_EQ(model->dense.at("w").values, expected_dense);
  EXPECT_EQ(model->dense.at("w").state.size(), 10u);

  // Incremental application (a serving replica) reaches the same rows.
  auto at2 = Materialize(root_, 2);
  ASSERT_TRUE(at2.ok()) << at2.status();
  auto r3 = VersionReader::Open(VersionDir(3));
  ASSERT_TRUE(r3.ok());
  MaterializedModel copy = *at2;
  ASSERT_TRUE(ApplyVersion(*r3, &copy).ok());
  EXPECT_EQ(copy.sparse.at("emb").size(), rows.size());
  for (uint64_t key : rows.keys()) {
    auto a = copy.sparse.at("emb").Find(key);
    auto b = rows.Find(key);
    ASSERT_TRUE(std::equal(a.begin(), a.end(), b.begin(), b.end())) << key;
  }
  // Applying a delta to the wrong base is refused.
  ExpectError(ApplyVersion(*r3, &copy), StatusCode::kFailedPrecondition, "delta of version 2");

  // Resume of server 1 only: load its files.
  MaterializeOptions only1;
  only1.include = [](const FileEntry& f) { return f.shard() == 1; };
  auto shard1 = Materialize(root_, 3, only1);
  ASSERT_TRUE(shard1.ok()) << shard1.status();
  for (uint64_t key : shard1->sparse.at("emb").keys()) EXPECT_TRUE(key % 2 == 1) << key;
  EXPECT_EQ(shard1->sparse.at("emb").size(), 10u - 1 + 1);  // 5 deleted, 101 added
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

// A training chain: full 1 (two sparse shards with AdaGrad state, a dense tensor
// over two servers), delta 2 (updates, additions, tombstones), delta 3.
class ExportTest : public ModelFormatTest {
 protected:
  void WriteChain() {
    const std::vector<TableSchema> schemas = {SparseSchema("emb", 8, 8),
                                              DenseSchema("w", {3, 4}, 2)};
    auto write = [&](uint64_t version, uint64_t parent, std::vector<SparseShard> shards,
                     std::vector<DenseSlice> slices) {
      auto w = VersionWriter::Begin(root_, version, parent, false, kF32);
      ASSERT_TRUE(w.ok()) << w.status();
      for (const auto& s : shards) ASSERT_TRUE(w->AddSparse(s).ok());
      for (const auto& d : slices) ASSERT_TRUE(w->AddDense(d).ok());
      VersionInfo info = Info(schemas);
      info.metrics["auc"] = 0.75 + 0.01 * static_cast<double>(version);
      info.attributes["model"] = "deepfm";
      StreamPosition p;
      p.set_worker(0);
      p.set_rows_consumed(1000 * version);
      p.set_source_state("offset=" + std::to_string(version));
      info.positions.push_back(p);
      Status st = w->Commit(info);
      ASSERT_TRUE(st.ok()) << st;
    };
    std::vector<uint64_t> even, odd;
    for (uint64_t k = 0; k < 400; ++k) (k % 2 ? odd : even).push_back(k);
    write(1, 0, {MakeShard("emb", 0, 8, 8, even, 1), MakeShard("emb", 1, 8, 8, odd, 2)},
          {MakeSlice("w", 0, 0, 6, 2, 0.5f), MakeSlice("w", 1, 6, 6, 2, 0.25f)});
    SparseShard d0 = MakeShard("emb", 0, 8, 8, {2, 4, 1000}, 3);
    d0.tombstones = {6, 8};
    write(2, 1, {d0, MakeShard("emb", 1, 8, 8, {1, 1001}, 4)}, {MakeSlice("w", 1, 6, 6, 2, 9)});
    SparseShard d1 = MakeShard("emb", 1, 8, 8, {3}, 5);
    d1.tombstones = {1001};
    write(3, 2, {d1}, {MakeSlice("w", 0, 0, 6, 2, -3)});
  }

  // Materializations of `version` agree: same keys, values within `tol(x)`.
  void ExpectClose(const std::string& dst, uint64_t version,
                   const std::function<double(std::span<const float>)>& tol) {
    auto want = Materialize(root_, version);
    auto got = Materialize(dst, version);
    ASSERT_TRUE(want.ok()) << want.status();
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_TRUE(got->manifest.serving());
    EXPECT_EQ(got->manifest.version(), version);
    EXPECT_EQ(got->manifest.metrics().at("auc"), want->manifest.metrics().at("auc"));
    EXPECT_EQ(got->manifest.attributes().at("model"), "deepfm");
    ASSERT_EQ(got->manifest.positions_size(), 1);
    EXPECT_EQ(got->manifest.positions(0).source_state(),
              want->manifest.positions(0).source_state());
    EXPECT_EQ(got->manifest.created_unix_ms(), want->manifest.created_unix_ms());
    for (const TableSchema& t : got->manifest.tables()) EXPECT_EQ(t.state_floats_per_value(), 0u);
    const SparseRows& a = want->sparse.at("emb");
    const SparseRows& b = got->sparse.at("emb");
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(b.state_floats(), 0u);
    for (uint64_t key : a.keys()) {
      auto x = a.Find(key), y = b.Find(key);
      ASSERT_EQ(y.size(), x.size()) << key;
      const double bound = tol(x);
      for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(x[i], y[i], bound) << key << " " << i;
    }
    EXPECT_EQ(got->dense.at("w").values, want->dense.at("w").values);  // float32
    EXPECT_TRUE(got->dense.at("w").state.empty());
  }

  std::string Dst(const std::string& name) const { return root_ + "/" + name; }
};

double MaxAbs(std::span<const float> row) {
  double m = 0;
  for (float x : row) m = std::max(m, static_cast<double>(std::fabs(x)));
  return m;
}

TEST_F(ExportTest, FullExportsMatchTheMaterializedChainInEveryEncoding) {
  WriteChain();
  const std::string f32 = Dst("serve_f32"), f16 = Dst("serve_f16"), i8 = Dst("serve_i8");
  ASSERT_TRUE(ExportForServing(root_, 3, f32, kF32).ok());
  ASSERT_TRUE(ExportForServing(root_, 3, f16, kF16).ok());
  ExportOptions one_thread;
  one_thread.threads = 1;
  ASSERT_TRUE(ExportForServing(root_, 3, i8, kI8, one_thread).ok());
  ExpectClose(f32, 3, [](auto) { return 0.0; });
  ExpectClose(f16, 3, [](auto row) { return MaxAbs(row) * std::ldexp(1.0, -11); });
  ExpectClose(i8, 3, [](auto row) { return MaxAbs(row) / 254 * 1.001 + 1e-7; });
  for (const std::string& dst : {f32, f16, i8}) {
    auto r = VersionReader::Open(dst + "/" + VersionDirName(3));
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->manifest().kind(), Manifest::KIND_FULL);
    EXPECT_TRUE(r->Verify().ok());
    int sparse_files = 0;
    for (const FileEntry& f : r->manifest().files()) sparse_files += f.table() == "emb";
    EXPECT_EQ(sparse_files, 2);  // the two source shards
  }
  EXPECT_EQ(VersionReader::Open(i8 + "/" + VersionDirName(3))->FindTable("emb")->value_encoding(),
            kI8);
  // Exporting the same version again is refused; nothing half-written remains.
  ExpectError(ExportForServing(root_, 3, f32, kF32), StatusCode::kAlreadyExists, "already exists");
  ExpectError(ExportForServing(root_, 9, Dst("x"), kF32), StatusCode::kNotFound,
              "version 9 is not committed");
}

TEST_F(ExportTest, DeltaExportAppliesOnTheExportedParent) {
  WriteChain();
  const std::string dst = Dst("serve");
  ExportOptions delta;
  delta.delta = true;
  ExpectError(ExportForServing(root_, 2, dst, kF16, delta), StatusCode::kFailedPrecondition,
              "export the parent first");
  ExpectError(ExportForServing(root_, 1, dst, kF16, delta), StatusCode::kInvalidArgument,
              "is a full version");
  ASSERT_TRUE(ExportForServing(root_, 1, dst, kF16).ok());
  ASSERT_TRUE(ExportForServing(root_, 2, dst, kF16, delta).ok());
  ASSERT_TRUE(ExportForServing(root_, 3, dst, kF16, delta).ok());
  auto r = VersionReader::Open(dst + "/" + VersionDirName(3));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->manifest().kind(), Manifest::KIND_DELTA);
  EXPECT_EQ(r->manifest().parent_version(), 2u);
  ExpectClose(dst, 3, [](auto row) { return MaxAbs(row) * std::ldexp(1.0, -11); });
}

TEST_F(ExportTest, ValuesBeyondTheEncodingFailWithoutLeavingAVersion) {
  auto w = VersionWriter::Begin(root_, 1, 0, false, kF32);
  ASSERT_TRUE(w.ok());
  SparseShard s = MakeShard("emb", 0, 2, 0, {1, 2}, 1);
  s.values[3] = 1e6f;  // beyond float16
  ASSERT_TRUE(w->AddSparse(s).ok());
  ASSERT_TRUE(w->Commit(Info({SparseSchema("emb", 2)})).ok());
  const std::string dst = Dst("serve");
  ExpectError(ExportForServing(root_, 1, dst, kF16), StatusCode::kInvalidArgument,
              "beyond the float16 range");
  EXPECT_TRUE(ListVersions(dst)->empty());
  EXPECT_TRUE(ExportForServing(root_, 1, dst, kI8).ok());
}

TEST(SparseRowsTest, UpsertEraseFind) {
  SparseRows rows(2, 1);
  const float a[] = {1, 2}, b[] = {3, 4}, c[] = {5, 6}, s[] = {9};
  rows.Upsert(10, a, s);
  rows.Upsert(20, b, {});
  rows.Upsert(30, c, s);
  EXPECT_EQ(rows.size(), 3u);
  EXPECT_TRUE(rows.Erase(10));  // moves 30 into the hole
  EXPECT_FALSE(rows.Erase(10));
  EXPECT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows.Find(30)[1], 6.0f);
  EXPECT_EQ(rows.FindState(30)[0], 9.0f);
  EXPECT_EQ(rows.FindState(20)[0], 0.0f);
  rows.Upsert(20, c, s);
  EXPECT_EQ(rows.Find(20)[0], 5.0f);
  EXPECT_TRUE(rows.Find(10).empty());
}

}  // namespace
}  // namespace eddy::model_store
