#include "serving/loaded_model.h"

#include <gtest/gtest.h>

#include <string>

namespace eddy::serving {
namespace {

proto::Manifest WithAttributes(std::initializer_list<std::pair<std::string, std::string>> kv) {
  proto::Manifest m;
  m.set_version(7);
  for (const auto& [k, v] : kv) (*m.mutable_attributes())[k] = v;
  return m;
}

TEST(ModelSpecTest, CriteoDefaultsFollowTheIntegerFeatureMode) {
  auto both = ModelSpecFromManifest(WithAttributes({{"model", "deepfm"}}));
  ASSERT_TRUE(both.ok()) << both.status();
  EXPECT_EQ(both->options.num_fields, 39);
  EXPECT_EQ(both->options.dense_dim, 13);
  EXPECT_EQ(both->parser.criteo_integers, worker::CriteoIntegers::kBoth);

  auto dense = ModelSpecFromManifest(WithAttributes({{"model", "fm"}, {"int_features", "dense"}}));
  ASSERT_TRUE(dense.ok()) << dense.status();
  EXPECT_EQ(dense->options.num_fields, 26);
  EXPECT_EQ(dense->options.dense_dim, 13);
  EXPECT_EQ(dense->parser.criteo_integers, worker::CriteoIntegers::kDense);

  auto buckets =
      ModelSpecFromManifest(WithAttributes({{"model", "lr"}, {"int_features", "buckets"}}));
  ASSERT_TRUE(buckets.ok()) << buckets.status();
  EXPECT_EQ(buckets->options.num_fields, 39);
  EXPECT_EQ(buckets->options.dense_dim, 0);

  auto bad = ModelSpecFromManifest(WithAttributes({{"model", "lr"}, {"int_features", "log"}}));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("int_features 'log'"), std::string::npos) << bad.status();
  EXPECT_FALSE(ModelSpecFromManifest(WithAttributes({})).ok());  // no model
}

}  // namespace
}  // namespace eddy::serving
