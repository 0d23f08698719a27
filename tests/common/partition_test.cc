#include "common/partition.h"

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <vector>

namespace eddy {
namespace {

// Pearson's chi-square statistic of `counts` against a uniform distribution.
double ChiSquare(const std::vector<uint64_t>& counts) {
  uint64_t total = 0;
  for (uint64_t c : counts) total += c;
  const double expected = double(total) / counts.size();
  double chi = 0;
  for (uint64_t c : counts) chi += (c - expected) * (c - expected) / expected;
  return chi;
}

// The statistic has mean k-1 and standard deviation sqrt(2(k-1)) for uniform
// data; allow six standard deviations (the inputs are fixed: no flakiness).
void ExpectUniform(const std::vector<uint64_t>& counts, const std::string& what) {
  const double dof = double(counts.size() - 1);
  EXPECT_LT(ChiSquare(counts), dof + 6 * std::sqrt(2 * dof)) << what;
}

constexpr uint64_t kKeys = 1'000'000;

// Key sets a model produces: consecutive ids, ids with structure in the high
// bits, and strided ids.
uint64_t KeyOf(int kind, uint64_t i) {
  switch (kind) {
    case 0:
      return i;
    case 1:
      return i << 40;
    default:
      return i * 1024 + 7;
  }
}

TEST(PartitionTest, ServerOfKeyIsUniform) {
  for (int kind = 0; kind < 3; ++kind) {
    for (uint32_t servers : {2u, 3u, 7u, 16u}) {
      std::vector<uint64_t> counts(servers);
      for (uint64_t i = 0; i < kKeys; ++i) ++counts[ServerOfKey(KeyOf(kind, i), servers)];
      ExpectUniform(counts,
                    "kind " + std::to_string(kind) + ", " + std::to_string(servers) + " servers");
    }
  }
}

TEST(PartitionTest, ShardsAreUniformWithinEveryServer) {
  // Joint (server, shard) counts: the shard bits are independent of the server bits.
  for (int kind = 0; kind < 3; ++kind) {
    const uint32_t servers = 4, shards = 64;
    std::vector<uint64_t> counts(servers * shards);
    for (uint64_t i = 0; i < kKeys; ++i) {
      const uint64_t key = KeyOf(kind, i);
      const uint64_t h = MixKey(key);
      ++counts[ServerOfKey(key, servers) * shards + ShardOfHash(h, shards)];
    }
    ExpectUniform(counts, "kind " + std::to_string(kind));
  }
}

TEST(PartitionTest, RangesAreRespected) {
  for (uint64_t key : {uint64_t{0}, uint64_t{1}, UINT64_MAX, uint64_t{1} << 63}) {
    EXPECT_EQ(ServerOfKey(key, 1), 0u);
    EXPECT_LT(ServerOfKey(key, 5), 5u);
    EXPECT_LT(ShardOfHash(MixKey(key), 3), 3u);
  }
  EXPECT_EQ(ScaleToRange(0, 10), 0u);
  EXPECT_EQ(ScaleToRange(UINT64_MAX, 10), 9u);
  EXPECT_EQ(ScaleToRange(uint64_t{1} << 63, 10), 5u);
}

TEST(PartitionTest, MixKeySpreadsNeighbours) {
  // Consecutive keys differ in about half of their bits after mixing.
  uint64_t bits = 0;
  for (uint64_t i = 0; i < 1000; ++i) bits += std::popcount(MixKey(i) ^ MixKey(i + 1));
  EXPECT_NEAR(double(bits) / 1000, 32.0, 2.0);
  EXPECT_NE(MixKey(0), 0u);
}

TEST(PartitionTest, DenseSlicesCoverTheTensorWithoutGaps) {
  for (uint64_t count : {uint64_t{0}, uint64_t{1}, uint64_t{5}, uint64_t{1000}, uint64_t{1} << 32,
                         (uint64_t{1} << 40) + 3}) {
    for (uint32_t servers : {1u, 2u, 3u, 7u, 64u}) {
      EXPECT_EQ(DenseSliceBegin(count, 0, servers), 0u);
      EXPECT_EQ(DenseSliceBegin(count, servers, servers), count);
      const uint64_t base = count / servers;
      for (uint32_t s = 0; s < servers; ++s) {
        const uint64_t begin = DenseSliceBegin(count, s, servers),
                       end = DenseSliceBegin(count, s + 1, servers);
        ASSERT_LE(begin, end);
        // Near-equal slices: each has floor(count / servers) or one more.
        EXPECT_GE(end - begin, base) << count << " " << s << "/" << servers;
        EXPECT_LE(end - begin, base + 1) << count << " " << s << "/" << servers;
      }
    }
  }
}

}  // namespace
}  // namespace eddy
