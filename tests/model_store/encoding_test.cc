// CRC32C and the float16 conversions of the value encodings.
#include "model_store/internal/encoding.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "model_store/crc32c.h"
#include "tests/model_store/model_store_test_util.h"

namespace eddy::model_store {
namespace {

namespace fs = std::filesystem;
using proto::Manifest;

TEST(Crc32cTest, KnownVectors) {
  EXPECT_EQ(Crc32c("123456789"), 0xE3069283u);
  EXPECT_EQ(Crc32c(""), 0u);
  // RFC 3720 (iSCSI) B.4 test vectors.
  EXPECT_EQ(Crc32c(std::string(32, '\0')), 0x8A9136AAu);
  EXPECT_EQ(Crc32c(std::string(32, '\xFF')), 0x62A8AB43u);
  std::string ascending;
  for (int i = 0; i < 32; ++i) ascending.push_back(static_cast<char>(i));
  EXPECT_EQ(Crc32c(ascending), 0x46DD794Eu);
}

TEST(Crc32cTest, ExtendEqualsWholeAtEverySplit) {
  std::string data;
  for (int i = 0; i < 100; ++i) data.push_back(static_cast<char>(i * 37 + 11));
  const uint32_t whole = Crc32c(data);
  for (size_t cut = 0; cut <= data.size(); ++cut) {
    const std::string_view a(data.data(), cut), b(data.data() + cut, data.size() - cut);
    EXPECT_EQ(Crc32cExtend(Crc32c(a), std::as_bytes(std::span(b.data(), b.size()))), whole);
  }
}

// Bit-at-a-time reference.
uint32_t SlowCrc32c(std::string_view data) {
  uint32_t c = 0xFFFFFFFFu;
  for (unsigned char b : data) {
    c ^= b;
    for (int i = 0; i < 8; ++i) c = (c >> 1) ^ ((c & 1u) ? 0x82F63B78u : 0u);
  }
  return ~c;
}

TEST(Crc32cTest, MatchesABitwiseReferenceAtEveryAlignmentAndLength) {
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(i * 131 + 7));
  for (size_t start = 0; start < 9; ++start) {
    for (size_t len : {0, 1, 7, 8, 9, 31, 32, 33, 64, 100, 250}) {
      const std::string_view piece(data.data() + start, len);
      EXPECT_EQ(Crc32c(piece), SlowCrc32c(piece)) << start << " " << len;
    }
  }
}

TEST(Crc32cTest, CombineEqualsWholeAtEverySplit) {
  std::string data;
  for (int i = 0; i < 200; ++i) data.push_back(static_cast<char>(i * 53 + 1));
  data += std::string(1 << 16, '\x5a');  // a long second piece (many squarings)
  const uint32_t whole = Crc32c(data);
  for (size_t cut :
       {size_t{0}, size_t{1}, size_t{8}, size_t{99}, size_t{200}, data.size() - 3, data.size()}) {
    const std::string_view a(data.data(), cut), b(data.data() + cut, data.size() - cut);
    EXPECT_EQ(Crc32cCombine(Crc32c(a), Crc32c(b), b.size()), whole) << cut;
  }
}

TEST(HalfTest, ExactValuesRoundTripAndRoundingIsToNearestEven) {
  for (float x : {0.0f, -0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f /* 2^-14 */,
                  5.9604645e-08f /* 2^-24, smallest subnormal */, 0.333251953125f}) {
    EXPECT_EQ(internal::HalfToFloat(internal::FloatToHalf(x)), x) << x;
  }
  EXPECT_EQ(internal::FloatToHalf(1.0f), 0x3C00);
  EXPECT_EQ(internal::FloatToHalf(-2.0f), 0xC000);
  EXPECT_EQ(internal::FloatToHalf(65504.0f), 0x7BFF);
  // Halfway between 1 and 1 + 2^-10 rounds to even (1); 1 + 3 * 2^-11 rounds up.
  EXPECT_EQ(internal::FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3C00);
  EXPECT_EQ(internal::FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3C02);
  EXPECT_EQ(internal::FloatToHalf(65520.0f), 0x7C00);  // first value that rounds to inf
  EXPECT_EQ(internal::FloatToHalf(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_TRUE(std::isnan(internal::HalfToFloat(internal::FloatToHalf(std::nanf("")))));
  EXPECT_EQ(internal::FloatToHalf(1e-9f), 0x0000);  // underflows to zero
}

TEST(HalfTest, ErrorIsWithinHalfAnUlp) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> exponent(-20.0f, 15.9f);
  for (int i = 0; i < 100000; ++i) {
    const float x = std::exp2(exponent(rng)) * (i % 2 ? 1.0f : -1.0f);
    const float y = internal::HalfToFloat(internal::FloatToHalf(x));
    // Normal halves: 11 significant bits; subnormals: absolute step 2^-24.
    const float bound = std::max(std::fabs(x) * std::ldexp(1.0f, -11), std::ldexp(1.0f, -25));
    ASSERT_LE(std::fabs(x - y), bound) << x << " -> " << y;
  }
}

}  // namespace
}  // namespace eddy::model_store
