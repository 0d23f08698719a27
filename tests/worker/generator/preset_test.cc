// The Criteo-like presets: distinct, reproducible, and with the statistics
// they state (CTR, cardinalities and tails, missing rates, id churn at drift).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "worker/generator/generator.h"
#include "worker/metrics/metrics.h"

namespace eddy::worker {
namespace {

constexpr int kInts = ClickStreamGenerator::kNumIntegerFields;
constexpr int kCats = ClickStreamGenerator::kNumCategoricalFields;

GeneratorOptions Preset(const std::string& name, uint64_t seed = 1) {
  GeneratorOptions o;
  o.seed = seed;
  const Status s = ApplyPreset(name, &o);
  EXPECT_TRUE(s.ok()) << s;
  return o;
}

std::vector<std::string_view> SplitTabs(std::string_view s) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t pos; (pos = s.find('\t', start)) != std::string_view::npos; start = pos + 1)
    out.push_back(s.substr(start, pos - start));
  out.push_back(s.substr(start));
  return out;
}

std::string Rows(const GeneratorOptions& o, int n) {
  ClickStreamGenerator gen(o);
  std::string out;
  float p = 0;
  for (int i = 0; i < n; ++i) gen.AppendRow(&out, &p);
  return out;
}

TEST(PresetTest, NamesAreKnownAndUnknownOnesRefused) {
  const std::vector<std::string> names = PresetNames();
  ASSERT_GE(names.size(), 3u);
  for (const std::string& n : names) EXPECT_TRUE(Preset(n).Validate().ok()) << n;
  GeneratorOptions o;
  EXPECT_EQ(ApplyPreset("criteo_z", &o).code(), StatusCode::kInvalidArgument);
  o.preset = "criteo_z";
  EXPECT_EQ(o.Validate().code(), StatusCode::kInvalidArgument);
}

TEST(PresetTest, PresetsDifferFromEachOtherAndFromTheDefault) {
  std::vector<std::string> streams = {Rows(GeneratorOptions{}, 2000)};
  for (const std::string& n : PresetNames()) streams.push_back(Rows(Preset(n), 2000));
  for (size_t i = 0; i < streams.size(); ++i)
    for (size_t j = i + 1; j < streams.size(); ++j) EXPECT_NE(streams[i], streams[j]) << i << j;
  EXPECT_NE(Preset("criteo_a").ctr, Preset("criteo_b").ctr);
  EXPECT_LT(Preset("criteo_c").drift_every, Preset("criteo_a").drift_every);
}

TEST(PresetTest, SameSeedSameBytesOtherSeedDifferent) {
  for (const std::string& n : PresetNames()) {
    GeneratorOptions o = Preset(n, 4);
    o.drift_every = 1000;  // drift is reproducible too
    o.max_vocab = 50000;   // (cheaper drifts)
    EXPECT_EQ(Rows(o, 3000), Rows(o, 3000)) << n;
    GeneratorOptions other = o;
    other.seed = 5;
    EXPECT_NE(Rows(o, 3000), Rows(other, 3000)) << n;
  }
}

TEST(PresetTest, StatedCtrOver200kRows) {
  constexpr int kRows = 200000;
  for (const std::string& n : PresetNames()) {
    const GeneratorOptions o = Preset(n);
    ClickStreamGenerator gen(o);
    std::vector<float> p(kRows), labels(kRows);
    std::string line;
    for (int i = 0; i < kRows; ++i) {
      line.clear();
      labels[i] = static_cast<float>(gen.AppendRow(&line, &p[i]));
    }
    BinaryMetrics m;
    m.AddBatch(p, labels);
    EXPECT_NEAR(m.MeanPrediction(), o.ctr, 0.05 * o.ctr) << n;
    EXPECT_NEAR(m.Ctr(), o.ctr, 0.05 * o.ctr + 4 * std::sqrt(o.ctr * (1 - o.ctr) / kRows)) << n;
  }
  EXPECT_NEAR(Preset("criteo_a").ctr, 0.035, 1e-9);
  EXPECT_NEAR(Preset("criteo_b").ctr, 0.25, 1e-9);
}

TEST(PresetTest, CriteoShapedCardinalitiesAndExponents) {
  for (const std::string& n : PresetNames()) {
    const std::vector<CategoricalFieldInfo> fields =
        ClickStreamGenerator(Preset(n)).CategoricalFields();
    ASSERT_EQ(fields.size(), static_cast<size_t>(kCats));
    uint64_t ids = 0;
    uint32_t lo = UINT32_MAX, hi = 0;
    for (const CategoricalFieldInfo& f : fields) {
      ids += f.vocab;
      lo = std::min(lo, f.vocab);
      hi = std::max(hi, f.vocab);
      EXPECT_GE(f.zipf_exponent, 1.05) << n;
      EXPECT_LE(f.zipf_exponent, 1.25) << n;
    }
    EXPECT_LE(lo, 10u) << n;         // a handful of values...
    EXPECT_EQ(hi, 1'000'000u) << n;  // ...to the cap
    EXPECT_GT(ids, 3'000'000u) << n;
  }
  double mean_a = 0, mean_c = 0;
  const auto a = ClickStreamGenerator(Preset("criteo_a")).CategoricalFields();
  const auto c = ClickStreamGenerator(Preset("criteo_c")).CategoricalFields();
  for (int f = 0; f < kCats; ++f) {
    mean_a += a[f].zipf_exponent / kCats;
    mean_c += c[f].zipf_exponent / kCats;
  }
  EXPECT_NEAR(mean_a, 1.1, 0.03);
  EXPECT_NEAR(mean_c, 1.2, 0.03);
}

// Expected number of distinct ranks among n draws of Zipf(s) over v ranks.
double ExpectedDistinct(uint32_t v, double s, double n) {
  double total = 0;
  for (uint32_t r = 0; r < v; ++r) total += std::pow(r + 1.0, -s);
  double distinct = 0;
  for (uint32_t r = 0; r < v; ++r)
    distinct += -std::expm1(n * std::log1p(-std::pow(r + 1.0, -s) / total));
  return distinct;
}

TEST(PresetTest, DistinctIdsTopShareAndMissingRatesMatchTheStatedOnes) {
  constexpr int kRows = 200000;
  GeneratorOptions o = Preset("criteo_a", 3);
  o.drift_every = 0;
  ClickStreamGenerator gen(o);
  const std::vector<CategoricalFieldInfo> fields = gen.CategoricalFields();
  std::vector<std::unordered_map<std::string, int>> counts(kCats);
  std::vector<int> cat_missing(kCats, 0), int_missing(kInts, 0);
  std::string line;
  float p = 0;
  for (int i = 0; i < kRows; ++i) {
    gen.NextRow(&line, &p);
    const std::vector<std::string_view> cols = SplitTabs(line);
    ASSERT_EQ(cols.size(), static_cast<size_t>(1 + kInts + kCats));
    for (int f = 0; f < kInts; ++f) int_missing[f] += cols[1 + f].empty();
    for (int f = 0; f < kCats; ++f) {
      const std::string_view v = cols[1 + kInts + f];
      if (v.empty()) {
        ++cat_missing[f];
      } else {
        ++counts[f][std::string(v)];
      }
    }
  }
  for (int f = 0; f < kCats; ++f) {
    const double rate = fields[f].missing_rate;
    EXPECT_NEAR(cat_missing[f] / double{kRows}, rate,
                4 * std::sqrt(rate * (1 - rate) / kRows) + 1e-9)
        << "C" << f + 1;
  }
  EXPECT_GT(*std::max_element(cat_missing.begin(), cat_missing.end()), kRows / 2);  // often empty
  EXPECT_GT(*std::max_element(int_missing.begin(), int_missing.end()), kRows / 2);
  EXPECT_EQ(*std::min_element(int_missing.begin(), int_missing.end()), 0);
  // The widest field (C3: 10^6 ranks) and a middle one (C10: 93k ranks).
  for (int f : {2, 9}) {
    const double present = kRows - cat_missing[f];
    const double expected = ExpectedDistinct(fields[f].vocab, fields[f].zipf_exponent, present);
    EXPECT_NEAR(counts[f].size(), expected, 0.05 * expected) << "C" << f + 1;
    int top = 0;
    for (const auto& [id, n] : counts[f]) top = std::max(top, n);
    double total = 0;
    for (uint32_t r = 0; r < fields[f].vocab; ++r)
      total += std::pow(r + 1.0, -fields[f].zipf_exponent);
    EXPECT_NEAR(top / present, 1 / total, 0.1 / total) << "C" << f + 1;
  }
}

// Per id of field `f`, its count in rows [0, n) and in rows [n, 2n).
void CountWindows(const GeneratorOptions& o, int f, int n,
                  std::unordered_map<std::string, int>* before,
                  std::unordered_map<std::string, int>* after) {
  ClickStreamGenerator gen(o);
  std::string line;
  float p = 0;
  for (int i = 0; i < 2 * n; ++i) {
    gen.NextRow(&line, &p);
    const std::string_view v = SplitTabs(line)[1 + kInts + f];
    if (!v.empty()) ++(*(i < n ? before : after))[std::string(v)];
  }
}

TEST(PresetTest, DriftRetiresPopularIdsAndBringsNewOnes) {
  constexpr int kWindow = 50000;
  GeneratorOptions drifting = Preset("criteo_c", 2), steady = drifting;
  drifting.drift_every = kWindow;
  steady.drift_every = 0;
  auto churn = [&](const GeneratorOptions& o, int* retired, int* popular_new) {
    std::unordered_map<std::string, int> before, after;
    CountWindows(o, /*f=C1*/ 0, kWindow, &before, &after);
    *retired = *popular_new = 0;
    for (const auto& [id, n] : before) *retired += n >= 20 && !after.count(id);
    for (const auto& [id, n] : after) *popular_new += n >= 20 && !before.count(id);
  };
  int retired_d = 0, new_d = 0, retired_s = 0, new_s = 0;
  churn(drifting, &retired_d, &new_d);
  churn(steady, &retired_s, &new_s);
  EXPECT_EQ(retired_s, 0);
  EXPECT_EQ(new_s, 0);
  EXPECT_GE(retired_d, 5);
  EXPECT_GE(new_d, 5);
}

}  // namespace
}  // namespace eddy::worker
