#include "worker/dedup.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

namespace eddy::worker {
namespace {

TEST(DedupTest, UniqueKeepsFirstAppearanceOrderAndIndexes) {
  std::vector<uint64_t> keys = {5, 0, 5, UINT64_MAX, 0, 7};
  UniqueKeys u = Unique(keys);
  EXPECT_EQ(u.keys, (std::vector<uint64_t>{5, 0, UINT64_MAX, 7}));
  EXPECT_EQ(u.index, (std::vector<uint32_t>{0, 1, 0, 2, 1, 3}));
}

TEST(DedupTest, SumAndExpandAgreeWithAMapReference) {
  std::mt19937_64 rng(3);
  std::vector<uint64_t> keys(10000);
  for (auto& k : keys) k = rng() % 1500;
  const size_t dim = 3;
  std::vector<float> grads(keys.size() * dim);
  for (auto& g : grads) g = static_cast<float>(rng() % 7);
  UniqueKeys u = Unique(keys);
  std::vector<float> sums = SumByUnique(u, grads, dim);
  std::map<uint64_t, std::vector<double>> ref;
  for (size_t i = 0; i < keys.size(); ++i) {
    auto& r = ref[keys[i]];
    r.resize(dim);
    for (size_t d = 0; d < dim; ++d) r[d] += grads[i * dim + d];
  }
  ASSERT_EQ(u.keys.size(), ref.size());
  for (size_t j = 0; j < u.keys.size(); ++j) {
    for (size_t d = 0; d < dim; ++d) EXPECT_EQ(sums[j * dim + d], ref[u.keys[j]][d]);
  }
  std::vector<float> expanded(keys.size() * dim);
  ExpandFromUnique(u, sums, dim, expanded.data());
  for (size_t i = 0; i < keys.size(); ++i) {
    for (size_t d = 0; d < dim; ++d) EXPECT_EQ(expanded[i * dim + d], ref[keys[i]][d]);
  }
}

TEST(DedupTest, EmptyInput) {
  UniqueKeys u = Unique({});
  EXPECT_TRUE(u.keys.empty());
  EXPECT_TRUE(SumByUnique(u, {}, 4).empty());
}

}  // namespace
}  // namespace eddy::worker
