// ExportForServing: full and delta serving versions in every encoding.
#include "model_store/serving_export.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "model_store/materialize.h"
#include "tests/model_store/model_store_test_util.h"

namespace eddy::model_store {
namespace {

namespace fs = std::filesystem;
using proto::Manifest;

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

}  // namespace
}  // namespace eddy::model_store
