// Materializing chains of full versions and deltas, and SparseRows.
#include "model_store/materialize.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "tests/model_store/model_store_test_util.h"

namespace eddy::model_store {
namespace {

namespace fs = std::filesystem;
using proto::Manifest;

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
