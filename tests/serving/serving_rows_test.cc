// ServingRows, the replica's compact sparse table: lookups, erase and
// reinsert, growth, and randomized operations against std::unordered_map.
#include "serving/serving_rows.h"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>
#include <vector>

namespace eddy::serving {
namespace {

std::vector<float> Row(uint32_t dim, float v) {
  std::vector<float> r(dim);
  for (uint32_t i = 0; i < dim; ++i) r[i] = v + static_cast<float>(i);
  return r;
}

void ExpectRow(const ServingRows& t, uint64_t key, const std::vector<float>& want) {
  std::span<const float> got = t.Find(key);
  ASSERT_EQ(got.size(), want.size()) << "key " << key;
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i], want[i]) << "key " << key;
}

TEST(ServingRowsTest, UpsertFindEraseAndReinsert) {
  ServingRows t(3);
  EXPECT_TRUE(t.Find(1).empty());
  EXPECT_FALSE(t.Erase(1));
  t.Upsert(1, Row(3, 1));
  t.Upsert(2, Row(3, 2));
  ExpectRow(t, 1, Row(3, 1));
  t.Upsert(1, Row(3, 10));  // replaces
  ExpectRow(t, 1, Row(3, 10));
  EXPECT_EQ(t.size(), 2u);
  EXPECT_TRUE(t.Erase(1));
  EXPECT_FALSE(t.Erase(1));
  EXPECT_TRUE(t.Find(1).empty());
  ExpectRow(t, 2, Row(3, 2));
  t.Upsert(1, Row(3, 5));
  ExpectRow(t, 1, Row(3, 5));
  EXPECT_EQ(t.size(), 2u);
}

TEST(ServingRowsTest, KeysEqualToTheSlotMarkersAreRowsLikeAnyOther) {
  ServingRows t(2);
  const uint64_t max = ~uint64_t{0};
  for (uint64_t k : {max, max - 1, uint64_t{0}}) t.Upsert(k, Row(2, static_cast<float>(k % 7)));
  EXPECT_EQ(t.size(), 3u);
  for (uint64_t k : {max, max - 1, uint64_t{0}}) ExpectRow(t, k, Row(2, static_cast<float>(k % 7)));
  size_t seen = 0;
  t.ForEach([&](uint64_t, std::span<const float>) { ++seen; });
  EXPECT_EQ(seen, 3u);
  EXPECT_TRUE(t.Erase(max));
  EXPECT_TRUE(t.Find(max).empty());
  ExpectRow(t, max - 1, Row(2, static_cast<float>((max - 1) % 7)));
  EXPECT_EQ(t.size(), 2u);
}

TEST(ServingRowsTest, GrowsKeepingTheLoadBetweenItsBounds) {
  ServingRows t(1);
  for (uint64_t k = 0; k < 100000; ++k) {
    t.Upsert(k * 7919, Row(1, static_cast<float>(k)));
    ASSERT_LE(static_cast<double>(t.size() + t.tombstones()),
              ServingRows::kMaxLoad * static_cast<double>(t.capacity()) + 1);
  }
  EXPECT_GE(static_cast<double>(t.size()), 0.7 * static_cast<double>(t.capacity()));
  for (uint64_t k = 0; k < 100000; ++k) ExpectRow(t, k * 7919, Row(1, static_cast<float>(k)));
  // Memory stays near the payload (8 + 4 bytes a row).
  EXPECT_LE(t.memory_bytes(), 1.35 * 12 * 100000);
}

TEST(ServingRowsTest, ReserveAvoidsRehashingAndCopiesAreIndependent) {
  ServingRows t(2);
  t.Reserve(1000);
  const size_t capacity = t.capacity();
  EXPECT_GE(static_cast<double>(capacity) * ServingRows::kReserveLoad, 1000.0);
  for (uint64_t k = 0; k < 1000; ++k) t.Upsert(k, Row(2, static_cast<float>(k)));
  EXPECT_EQ(t.capacity(), capacity);
  ServingRows copy = t;
  copy.Upsert(5, Row(2, -1));
  copy.Erase(6);
  ExpectRow(t, 5, Row(2, 5));
  ExpectRow(t, 6, Row(2, 6));
  ExpectRow(copy, 5, Row(2, -1));
  EXPECT_TRUE(copy.Find(6).empty());
}

TEST(ServingRowsTest, ChurnAtAFixedSizeReusesTombstonesWithoutGrowing) {
  ServingRows t(1);
  for (uint64_t k = 0; k < 10000; ++k) t.Upsert(k, Row(1, 1));
  const size_t capacity = t.capacity();
  // Erase old keys, insert new ones: the size stays, tombstones are reused or
  // cleared by in-place rehashes.
  for (uint64_t k = 10000; k < 200000; ++k) {
    ASSERT_TRUE(t.Erase(k - 10000));
    t.Upsert(k, Row(1, static_cast<float>(k)));
  }
  EXPECT_EQ(t.size(), 10000u);
  EXPECT_LE(t.capacity(), capacity + capacity / 4);
  for (uint64_t k = 190000; k < 200000; ++k) ExpectRow(t, k, Row(1, static_cast<float>(k)));
  EXPECT_TRUE(t.Find(189999).empty());
}

TEST(ServingRowsTest, RandomOperationsMatchAnUnorderedMap) {
  for (uint32_t seed : {1u, 2u, 3u}) {
    SCOPED_TRACE(seed);
    std::mt19937_64 rng(seed);
    ServingRows t(2);
    std::unordered_map<uint64_t, std::vector<float>> want;
    // A small key space (many hits, erases and reinserts) plus the markers.
    std::uniform_int_distribution<uint64_t> small(0, 3000);
    auto key = [&]() -> uint64_t {
      const uint64_t r = rng() % 100;
      if (r == 0) return ~uint64_t{0} - (rng() % 2);
      return r < 50 ? small(rng) : small(rng) * uint64_t{0x9E3779B97F4A7C15ULL};
    };
    for (int op = 0; op < 200000; ++op) {
      const uint64_t k = key();
      switch (rng() % 4) {
        case 0:
        case 1: {
          std::vector<float> v = Row(2, static_cast<float>(op));
          t.Upsert(k, v);
          want[k] = v;
          break;
        }
        case 2:
          ASSERT_EQ(t.Erase(k), want.erase(k) == 1) << k;
          break;
        default: {
          auto it = want.find(k);
          if (it == want.end()) {
            ASSERT_TRUE(t.Find(k).empty()) << k;
          } else {
            ExpectRow(t, k, it->second);
          }
        }
      }
      ASSERT_EQ(t.size(), want.size());
    }
    size_t seen = 0;
    t.ForEach([&](uint64_t k, std::span<const float> v) {
      ++seen;
      auto it = want.find(k);
      ASSERT_NE(it, want.end()) << k;
      EXPECT_EQ(std::vector<float>(v.begin(), v.end()), it->second);
    });
    EXPECT_EQ(seen, want.size());
  }
}

}  // namespace
}  // namespace eddy::serving
