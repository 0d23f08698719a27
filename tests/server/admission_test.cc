#include "server/admission.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "common/partition.h"

namespace eddy::server {
namespace {

proto::AdmissionConfig Config(uint32_t min_count, float probability = 0, uint64_t seed = 1) {
  proto::AdmissionConfig c;
  c.set_min_count(min_count);
  c.set_probability(probability);
  c.set_seed(seed);
  return c;
}

TEST(CountMinSketchTest, NeverUndercountsAndStaysCloseWhenWide) {
  CountMinSketch sketch(4, 1 << 14);
  std::map<uint64_t, uint32_t> truth;
  std::mt19937_64 rng(3);
  // Zipf-like: small ids are frequent.
  for (int i = 0; i < 200'000; ++i) {
    const uint64_t id =
        static_cast<uint64_t>(std::pow(2.0, std::uniform_real_distribution<>(0, 14)(rng)));
    ++truth[id];
    sketch.Add(MixKey(id));
  }
  uint64_t over = 0;
  for (const auto& [id, n] : truth) {
    const uint32_t e = sketch.Estimate(MixKey(id));
    ASSERT_GE(e, std::min<uint32_t>(n, UINT16_MAX)) << id;
    over += e - std::min<uint32_t>(n, UINT16_MAX);
  }
  // e * N / width bounds each error with high probability; on average far less.
  EXPECT_LT(static_cast<double>(over) / truth.size(), 2.718 * 200'000 / (1 << 14));
}

TEST(CountMinSketchTest, CountersSaturate) {
  CountMinSketch sketch(2, 16);
  EXPECT_EQ(sketch.Estimate(42), 0u);
  for (int i = 0; i < 70'000; ++i) sketch.Add(42);
  EXPECT_EQ(sketch.Estimate(42), UINT16_MAX);
}

TEST(AdmissionFilterTest, DisabledAdmitsEverythingAtOnce) {
  for (const proto::AdmissionConfig& c : {Config(0), Config(1), Config(0, 1.0f)}) {
    AdmissionFilter f(c, 1024);
    EXPECT_FALSE(f.enabled());
    EXPECT_TRUE(f.Admit(5, MixKey(5)));
    EXPECT_EQ(f.MemoryBytes(), 0u);
  }
}

TEST(AdmissionFilterTest, CountAndCoinTogether) {
  // min_count 4 with a tiny probability: the 4th sighting admits for sure.
  AdmissionFilter f(Config(4, 1e-6f), 1 << 12);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(f.Admit(11, MixKey(11)));
  EXPECT_TRUE(f.Admit(11, MixKey(11)));
}

TEST(AdmissionFilterTest, AdmitsOnTheNthSighting) {
  AdmissionFilter f(Config(3), 1 << 12);
  ASSERT_TRUE(f.enabled());
  EXPECT_FALSE(f.Admit(7, MixKey(7)));
  EXPECT_FALSE(f.Admit(8, MixKey(8)));
  EXPECT_FALSE(f.Admit(7, MixKey(7)));
  EXPECT_TRUE(f.Admit(7, MixKey(7)));
  EXPECT_EQ(f.stats().first_seen, 2u);
  EXPECT_EQ(f.stats().admitted, 1u);
  EXPECT_EQ(f.stats().pending_pushes, 3u);
  EXPECT_EQ(f.stats().waiting(), 1u);  // id 8
}

TEST(AdmissionFilterTest, ProbabilityAdmitsAboutThatShareReproducibly) {
  AdmissionFilter a(Config(0, 0.25f, 9), 1 << 16), b(Config(0, 0.25f, 9), 1 << 16);
  int admitted = 0;
  for (uint64_t id = 0; id < 20'000; ++id) {
    const bool x = a.Admit(id, MixKey(id));
    EXPECT_EQ(x, b.Admit(id, MixKey(id)));
    admitted += x;
  }
  EXPECT_NEAR(admitted / 20'000.0, 0.25, 0.02);
  // Another seed flips other coins.
  AdmissionFilter c(Config(0, 0.25f, 10), 1 << 16);
  int same = 0;
  AdmissionFilter d(Config(0, 0.25f, 9), 1 << 16);
  for (uint64_t id = 0; id < 2'000; ++id)
    same += c.Admit(id, MixKey(id)) == d.Admit(id, MixKey(id));
  EXPECT_LT(same, 1'900);
}

}  // namespace
}  // namespace eddy::server
