#include "worker/generator/generator_source.h"

#include <gtest/gtest.h>

namespace eddy::worker {
namespace {

TEST(GeneratedStreamSpecTest, ParsesKeysAndRefusesBadOnes) {
  auto plain = ParseGeneratedStreamSpec("gen");
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->rows, 1'000'000u);
  auto spec = ParseGeneratedStreamSpec("gen:rows=500,drift=100,seed=7,ctr=0.2,signal=2,vocab=50");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->rows, 500u);
  EXPECT_EQ(spec->generator.drift_every, 100u);
  EXPECT_EQ(spec->generator.seed, 7u);
  EXPECT_DOUBLE_EQ(spec->generator.ctr, 0.2);
  EXPECT_DOUBLE_EQ(spec->generator.signal, 2);
  EXPECT_EQ(spec->generator.max_vocab, 50u);
  for (const char* bad :
       {"gen:rows", "gen:rows=x", "gen:colour=3", "gen:rows=-1", "genx", "gen:ctr=0.95"}) {
    EXPECT_FALSE(ParseGeneratedStreamSpec(bad).ok()) << bad;
  }
}

TEST(GeneratedStreamSpecTest, PresetSetsDefaultsThatOtherKeysOverride) {
  auto spec = ParseGeneratedStreamSpec("gen:rows=50,ctr=0.05,preset=criteo_b,seed=9");
  ASSERT_TRUE(spec.ok()) << spec.status();
  GeneratorOptions expected;
  ASSERT_TRUE(ApplyPreset("criteo_b", &expected).ok());
  EXPECT_EQ(spec->generator.preset, "criteo_b");
  EXPECT_DOUBLE_EQ(spec->generator.ctr, 0.05);  // given explicitly, before the preset
  EXPECT_EQ(spec->generator.drift_every, expected.drift_every);
  EXPECT_DOUBLE_EQ(spec->generator.signal, expected.signal);
  EXPECT_EQ(spec->generator.seed, 9u);
  EXPECT_FALSE(ParseGeneratedStreamSpec("gen:preset=criteo_z").ok());
  EXPECT_FALSE(ParseGeneratedStreamSpec("gen:preset=").ok());
}

TEST(GeneratorSourceTest, YieldsTheGeneratorsRowsThenEnds) {
  auto spec = ParseGeneratedStreamSpec("gen:rows=300,seed=3,vocab=100");
  ASSERT_TRUE(spec.ok());
  GeneratorSource source(*spec);
  ClickStreamGenerator reference(spec->generator);
  Line line;
  std::string expected;
  float p = 0;
  for (uint64_t i = 1; i <= 300; ++i) {
    auto more = source.Next(&line);
    ASSERT_TRUE(more.ok() && *more) << i;
    reference.NextRow(&expected, &p);
    EXPECT_EQ(line.text, expected);
    EXPECT_EQ(line.line_number, i);
    EXPECT_EQ(line.origin, "<generated>");
  }
  auto end = source.Next(&line);
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(*end);
}

}  // namespace
}  // namespace eddy::worker
