// Export and Import of server state (weights and optimizer state), the basis of
// model versions and of resuming a job: a table rebuilt from an export behaves
// exactly like the original under further pushes.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <thread>
#include <vector>

#include "server/dense_tensor.h"
#include "server/embedding_table.h"
#include "tests/testing/table_spec.h"

namespace eddy::server {
namespace {

using testing::TableSpec;

std::vector<float> RandomGrads(size_t n, std::mt19937& rng) {
  std::normal_distribution<float> d(0, 0.1f);
  std::vector<float> g(n);
  for (float& x : g) x = d(rng);
  return g;
}

TEST(ExportTest, SparseTableRebuiltFromAnExportTrainsIdentically) {
  for (const char* opt : {"opt=adam,lr=0.01", "opt=ftrl,lr=0.1,l1=0.01", "opt=adagrad,lr=0.1"}) {
    SCOPED_TRACE(opt);
    const auto config = TableSpec(std::string("emb:dim=4,init=normal,init_scale=0.1,") + opt);
    auto a = EmbeddingTable::Create(config, 8);
    auto b = EmbeddingTable::Create(config, 3);  // another shard count: keys are re-sharded
    ASSERT_TRUE(a.ok() && b.ok());
    std::mt19937 rng(7);
    std::vector<uint64_t> keys;
    for (uint64_t k = 0; k < 500; ++k) keys.push_back(k * 7919 + 3);
    for (int step = 0; step < 5; ++step) {
      (*a)->Push(keys, RandomGrads(keys.size() * 4, rng).data(), nullptr);
    }
    std::vector<uint64_t> ex_keys;
    std::vector<float> weights, state;
    (*a)->Export(&ex_keys, &weights, &state);
    ASSERT_EQ(ex_keys.size(), 500u);
    EXPECT_EQ(state.size(), 500u * (*a)->state_floats());
    ASSERT_TRUE((*b)->Import(ex_keys, weights, state).ok());
    EXPECT_EQ((*b)->size(), 500u);
    // Further identical pushes give identical weights: the optimizer state came along.
    const std::vector<float> more = RandomGrads(keys.size() * 4, rng);
    (*a)->Push(keys, more.data(), nullptr);
    (*b)->Push(keys, more.data(), nullptr);
    std::vector<float> wa(keys.size() * 4), wb(keys.size() * 4);
    (*a)->Pull(keys, wa.data(), nullptr);
    (*b)->Pull(keys, wb.data(), nullptr);
    EXPECT_EQ(wa, wb);
  }
}

TEST(ExportTest, ImportOverwritesExistingRowsAndChecksSizes) {
  const auto config = TableSpec("emb:dim=2,opt=adagrad,lr=0.1,acc=0.5");
  auto t = EmbeddingTable::Create(config, 4);
  ASSERT_TRUE(t.ok());
  const std::vector<uint64_t> keys = {1, 2};
  std::vector<float> w(4);
  (*t)->Pull(keys, w.data(), nullptr);  // creates both rows
  ASSERT_TRUE((*t)->Import(keys, std::vector<float>{1, 2, 3, 4}, {}).ok());
  (*t)->Pull(keys, w.data(), nullptr);
  EXPECT_EQ(w, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ((*t)->size(), 2u);
  // Without state the accumulator restarts at acc: w -= 0.1 * g / sqrt(0.5 + g^2).
  (*t)->Push(std::vector<uint64_t>{1}, std::vector<float>{0.5f, 0.5f}.data(), nullptr);
  (*t)->Pull(keys, w.data(), nullptr);
  EXPECT_NEAR(w[0], 1 - 0.1 * 0.5 / std::sqrt(0.75), 1e-6);
  EXPECT_FALSE((*t)->Import(keys, std::vector<float>{1, 2, 3}, {}).ok());
  EXPECT_FALSE((*t)->Import(keys, std::vector<float>{1, 2, 3, 4}, std::vector<float>{1}).ok());
}

// Sorted (key, row) pairs of a table: weights then state.
std::map<uint64_t, std::vector<float>> Rows(const EmbeddingTable& t) {
  std::vector<uint64_t> keys;
  std::vector<float> w, st;
  t.Export(&keys, &w, &st);
  std::map<uint64_t, std::vector<float>> rows;
  const size_t d = t.dim(), sf = t.state_floats();
  for (size_t i = 0; i < keys.size(); ++i) {
    std::vector<float>& r = rows[keys[i]];
    r.assign(w.begin() + i * d, w.begin() + (i + 1) * d);
    r.insert(r.end(), st.begin() + i * sf, st.begin() + (i + 1) * sf);
  }
  return rows;
}

TEST(ExportTest, BulkImportFromSeveralThreadsRemoveClearAndReserve) {
  const auto config = TableSpec("emb:dim=3,opt=adam,lr=0.01");
  auto t = EmbeddingTable::Create(config, 16);
  ASSERT_TRUE(t.ok());
  (*t)->Reserve(40000);
  const size_t n = 40000, row = 3 + 7;
  std::vector<uint64_t> keys(n);
  std::vector<float> w(n * 3), st(n * 7);
  for (size_t i = 0; i < n; ++i) keys[i] = i * 1000003 + 17;
  for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i) * 0.5f;
  for (size_t i = 0; i < st.size(); ++i) st[i] = static_cast<float>(i) * 0.25f;
  std::vector<std::thread> threads;
  for (size_t part = 0; part < 4; ++part) {
    threads.emplace_back([&, part] {
      const size_t b = part * n / 4, e = (part + 1) * n / 4;
      EXPECT_TRUE((*t)->Import(std::span(keys).subspan(b, e - b),
                               std::span(w).subspan(b * 3, (e - b) * 3),
                               std::span(st).subspan(b * 7, (e - b) * 7))
                      .ok());
    });
  }
  for (auto& th : threads) th.join();
  ASSERT_EQ((*t)->size(), n);
  auto rows = Rows(**t);
  for (size_t i = 0; i < n; i += 997) {
    std::vector<float> want(w.begin() + i * 3, w.begin() + i * 3 + 3);
    want.insert(want.end(), st.begin() + i * 7, st.begin() + i * 7 + 7);
    ASSERT_EQ(rows[keys[i]], want) << i;
    ASSERT_EQ(rows[keys[i]].size(), row);
  }
  // A key given twice in one call gets its last row.
  ASSERT_TRUE((*t)->Import(std::vector<uint64_t>{keys[0], keys[0]},
                           std::vector<float>{1, 2, 3, 4, 5, 6}, {})
                  .ok());
  EXPECT_EQ(Rows(**t)[keys[0]], (std::vector<float>{4, 5, 6, 0, 0, 0, 0, 0, 0, 0}));
  // Remove leaves no tombstones; Clear empties the table and keeps the epoch.
  EXPECT_EQ((*t)->Remove(std::vector<uint64_t>{keys[1], keys[2], 5}), 2u);
  EXPECT_EQ((*t)->size(), n - 2);
  EXPECT_EQ((*t)->num_tombstones(), 0u);
  (*t)->AdvanceEpoch();
  EXPECT_EQ((*t)->EvictStale(2), n - 2);
  EXPECT_EQ((*t)->num_tombstones(), n - 2);
  const uint32_t epoch = (*t)->epoch();
  (*t)->Clear();
  EXPECT_EQ((*t)->size(), 0u);
  EXPECT_EQ((*t)->num_tombstones(), 0u);
  EXPECT_EQ((*t)->epoch(), epoch);
  EXPECT_LT((*t)->MemoryBytes(), 64u << 10);
  std::vector<float> out(3);
  (*t)->Pull(std::vector<uint64_t>{keys[3]}, out.data(), nullptr);  // a new row again
  EXPECT_EQ((*t)->size(), 1u);
}

TEST(ExportTest, DenseSliceRebuiltFromAnExportTrainsIdentically) {
  const auto config = TableSpec("mlp:shape=3x5000,opt=adam,lr=0.01,init=uniform,init_scale=0.1");
  auto a = DenseTensor::Create(config, 100, 15000);
  auto b = DenseTensor::Create(config, 100, 15000);
  ASSERT_TRUE(a.ok() && b.ok());
  std::mt19937 rng(3);
  for (int step = 0; step < 3; ++step) (*a)->Push(RandomGrads(14900, rng).data(), nullptr);
  std::vector<float> values, state;
  (*a)->Export(&values, &state);
  ASSERT_EQ(values.size(), 14900u);
  ASSERT_TRUE((*b)->Import(values, state).ok());
  const std::vector<float> more = RandomGrads(14900, rng);
  (*a)->Push(more.data(), nullptr);
  (*b)->Push(more.data(), nullptr);
  std::vector<float> va(14900), vb(14900);
  (*a)->Pull(va.data(), nullptr);
  (*b)->Pull(vb.data(), nullptr);
  EXPECT_EQ(va, vb);
  EXPECT_FALSE((*b)->Import(std::vector<float>(10), {}).ok());
  EXPECT_FALSE((*b)->Import(values, std::vector<float>(3)).ok());
}

}  // namespace
}  // namespace eddy::server
