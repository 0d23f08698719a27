// Export and Import of server state (weights and optimizer state), the basis of
// model versions and of resuming a job: a table rebuilt from an export behaves
// exactly like the original under further pushes.
#include <gtest/gtest.h>

#include <random>
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
