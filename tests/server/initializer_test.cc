#include "server/initializer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <vector>

namespace eddy::server {
namespace {

proto::InitializerConfig Config(const std::string& kind, float scale, uint64_t seed) {
  proto::InitializerConfig c;
  c.set_kind(kind);
  c.set_scale(scale);
  c.set_seed(seed);
  return c;
}

std::vector<float> Row(const Initializer& init, uint64_t key, size_t dim) {
  std::vector<float> w(dim, -1.0f);
  init.FillRow(key, w.data(), dim);
  return w;
}

std::vector<float> Dense(const Initializer& init, uint64_t first, size_t n) {
  std::vector<float> w(n, -1.0f);
  init.FillDense(first, w.data(), n);
  return w;
}

struct Moments {
  double mean, stddev, within_one_stddev;
};

Moments Measure(const std::vector<float>& v, double scale) {
  double sum = 0, sum_sq = 0;
  size_t within = 0;
  for (float x : v) {
    sum += x;
    sum_sq += double{x} * x;
    within += std::abs(x) <= scale;
  }
  const double mean = sum / v.size();
  return {mean, std::sqrt(sum_sq / v.size() - mean * mean), double(within) / v.size()};
}

TEST(InitializerTest, ZerosIsZero) {
  Initializer init(Config("zeros", 1.0f, 3));
  for (float x : Row(init, 42, 17)) EXPECT_EQ(x, 0.0f);
  for (float x : Dense(init, 5, 9)) EXPECT_EQ(x, 0.0f);
  // A zero scale gives zeros whatever the kind.
  for (float x : Row(Initializer(Config("normal", 0.0f, 3)), 42, 5)) EXPECT_EQ(x, 0.0f);
}

TEST(InitializerTest, SameSeedKeyAndIndexGiveTheSameValue) {
  for (const char* kind : {"uniform", "normal"}) {
    Initializer a(Config(kind, 0.1f, 7)), b(Config(kind, 0.1f, 7));
    for (uint64_t key : {uint64_t{0}, uint64_t{1}, uint64_t{12345}, UINT64_MAX}) {
      EXPECT_EQ(Row(a, key, 16), Row(b, key, 16)) << kind;
      // A longer row starts with the same values (index-wise generation).
      auto longer = Row(a, key, 33);
      EXPECT_EQ(std::vector<float>(longer.begin(), longer.begin() + 16), Row(a, key, 16));
    }
    EXPECT_EQ(Dense(a, 0, 100), Dense(b, 0, 100));
    EXPECT_NE(Row(a, 1, 16), Row(a, 2, 16));
    EXPECT_NE(Row(a, 1, 16), Row(Initializer(Config(kind, 0.1f, 8)), 1, 16));
    EXPECT_NE(Dense(a, 0, 16), Dense(Initializer(Config(kind, 0.1f, 8)), 0, 16));
  }
}

TEST(InitializerTest, OrderOfAccessDoesNotMatter) {
  Initializer init(Config("normal", 0.1f, 11));
  std::vector<uint64_t> keys;
  for (uint64_t k = 0; k < 100; ++k) keys.push_back(k * 0x9e3779b97f4a7c15ULL);
  std::vector<std::vector<float>> forward, backward(keys.size());
  for (uint64_t k : keys) forward.push_back(Row(init, k, 8));
  for (size_t i = keys.size(); i-- > 0;) backward[i] = Row(init, keys[i], 8);
  EXPECT_EQ(forward, backward);
}

TEST(InitializerTest, DenseSlicesAgreeWithTheWholeTensor) {
  for (const char* kind : {"uniform", "normal"}) {
    Initializer init(Config(kind, 1.0f, 5));
    const size_t n = 1001;
    auto whole = Dense(init, 0, n);
    // Cut points include odd offsets, which split a Box-Muller pair.
    const size_t cuts[] = {0, 1, 2, 7, 100, 333, 334, 999, 1000, 1001};
    for (size_t c = 0; c + 1 < std::size(cuts); ++c) {
      auto part = Dense(init, cuts[c], cuts[c + 1] - cuts[c]);
      for (size_t i = 0; i < part.size(); ++i)
        EXPECT_EQ(part[i], whole[cuts[c] + i]) << kind << " " << cuts[c] + i;
    }
  }
}

TEST(InitializerTest, UniformRangeAndMoments) {
  const float scale = 0.5f;
  Initializer init(Config("uniform", scale, 1));
  std::vector<float> v;
  for (uint64_t key = 0; key < 10000; ++key) {
    auto row = Row(init, key, 10);
    v.insert(v.end(), row.begin(), row.end());
  }
  for (float x : v) {
    ASSERT_GT(x, -scale);
    ASSERT_LT(x, scale);
  }
  Moments m = Measure(v, scale);
  EXPECT_NEAR(m.mean, 0.0, 0.005);
  EXPECT_NEAR(m.stddev, scale / std::sqrt(3.0), 0.005);
  // Distinct values: no short cycles.
  EXPECT_GT(std::set<float>(v.begin(), v.end()).size(), v.size() * 9 / 10);
}

TEST(InitializerTest, NormalMoments) {
  const float scale = 0.01f;
  Initializer init(Config("normal", scale, 2));
  std::vector<float> v;
  for (uint64_t key = 0; key < 10000; ++key) {
    auto row = Row(init, key * 7919, 10);
    v.insert(v.end(), row.begin(), row.end());
  }
  auto dense = Dense(init, 123, 100000);
  for (const auto* values : {&v, &dense}) {
    for (float x : *values) ASSERT_TRUE(std::isfinite(x));
    Moments m = Measure(*values, scale);
    EXPECT_NEAR(m.mean, 0.0, 0.0002);
    EXPECT_NEAR(m.stddev, scale, 0.0002);
    EXPECT_NEAR(m.within_one_stddev, 0.6827, 0.01);
  }
  // Even and odd elements (cos and sin halves) are each normal and uncorrelated.
  double even_sq = 0, odd_sq = 0, cross = 0;
  for (size_t i = 0; i + 1 < dense.size(); i += 2) {
    even_sq += double{dense[i]} * dense[i];
    odd_sq += double{dense[i + 1]} * dense[i + 1];
    cross += double{dense[i]} * dense[i + 1];
  }
  EXPECT_NEAR(even_sq / odd_sq, 1.0, 0.03);
  EXPECT_NEAR(cross / std::sqrt(even_sq * odd_sq), 0.0, 0.03);
}

}  // namespace
}  // namespace eddy::server

namespace eddy::server {
namespace {

TEST(InitializerTest, RowHeadHasItsOwnInitializerAndTheRestIsUnchanged) {
  proto::TableConfig table;
  table.set_name("emb");
  table.set_dim(17);
  *table.mutable_initializer() = Config("normal", 0.01f, 5);
  const Initializer plain = Initializer::ForRows(table);
  table.mutable_head()->set_dim(1);
  *table.mutable_head()->mutable_initializer() = Config("zeros", 0.0f, 5);
  const Initializer with_head = Initializer::ForRows(table);
  for (uint64_t key : {uint64_t{3}, uint64_t{77}, UINT64_MAX}) {
    const std::vector<float> a = Row(plain, key, 17), b = Row(with_head, key, 17);
    EXPECT_NE(a[0], 0.0f);
    EXPECT_EQ(b[0], 0.0f);
    EXPECT_EQ(std::vector<float>(a.begin() + 1, a.end()),
              std::vector<float>(b.begin() + 1, b.end()));
  }
  // A head drawn from its own stream: not the row's first values.
  *table.mutable_head()->mutable_initializer() = Config("normal", 0.01f, 5);
  table.mutable_head()->set_dim(2);
  const std::vector<float> c = Row(Initializer::ForRows(table), 3, 17);
  const std::vector<float> a = Row(plain, 3, 17);
  EXPECT_NE(c[0], a[0]);
  EXPECT_NE(c[0], 0.0f);
  EXPECT_EQ(c[5], a[5]);
}

}  // namespace
}  // namespace eddy::server
