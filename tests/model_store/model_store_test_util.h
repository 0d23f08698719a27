// Shared by the model_store unit tests: shards, slices and schemas with
// recomputable values, raw file access for corruption tests, and a fixture
// that owns a temporary model root. Not thread-safe.
#ifndef EDDY_TESTS_MODEL_STORE_MODEL_STORE_TEST_UTIL_H_
#define EDDY_TESTS_MODEL_STORE_MODEL_STORE_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "model_store/format.h"
#include "model_store/version_dir.h"
#include "model_store/version_reader.h"
#include "model_store/version_writer.h"

namespace eddy::model_store {

namespace fs = std::filesystem;

inline constexpr Encoding kF32 = proto::Manifest::ENCODING_FLOAT32;
inline constexpr Encoding kF16 = proto::Manifest::ENCODING_FLOAT16;
inline constexpr Encoding kI8 = proto::Manifest::ENCODING_INT8_ROW_SCALE;

// ---------------------------------------------------------------------------
// Helpers.

inline std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline void WriteBytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

inline TableSchema SparseSchema(const std::string& name, uint32_t dim, uint32_t state_floats = 0) {
  TableSchema t;
  t.set_name(name);
  t.set_dim(dim);
  t.set_optimizer("adagrad");
  t.set_state_floats_per_value(state_floats);
  return t;
}

inline TableSchema DenseSchema(const std::string& name, std::vector<uint64_t> shape,
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
inline SparseShard MakeShard(const std::string& table, uint32_t shard, uint32_t dim,
                             uint32_t state_floats, std::vector<uint64_t> keys, uint32_t seed) {
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

inline DenseSlice MakeSlice(const std::string& table, uint32_t shard, uint64_t offset, size_t n,
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

inline VersionInfo Info(std::vector<TableSchema> tables) {
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

inline void ExpectError(const Status& s, StatusCode code, const std::string& words) {
  EXPECT_EQ(s.code(), code) << s;
  EXPECT_NE(s.message().find(words), std::string::npos)
      << "'" << s.message() << "' does not mention '" << words << "'";
}

}  // namespace eddy::model_store

#endif  // EDDY_TESTS_MODEL_STORE_MODEL_STORE_TEST_UTIL_H_
