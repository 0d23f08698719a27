#include "worker/generator/generator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "worker/metrics/auc.h"
#include "worker/metrics/metrics.h"

namespace eddy::worker {
namespace {

constexpr int kColumns =
    1 + ClickStreamGenerator::kNumIntegerFields + ClickStreamGenerator::kNumCategoricalFields;

// Small vocabularies keep construction cheap; the widest field still has 50k values.
GeneratorOptions SmallOptions(uint64_t seed) {
  GeneratorOptions o;
  o.seed = seed;
  o.max_vocab = 50000;
  return o;
}

struct Stream {
  std::string bytes;
  std::vector<float> p, labels;
};

Stream Generate(const GeneratorOptions& o, size_t rows) {
  ClickStreamGenerator gen(o);
  Stream s;
  for (size_t i = 0; i < rows; ++i) {
    float p = 0;
    s.labels.push_back(static_cast<float>(gen.AppendRow(&s.bytes, &p)));
    s.p.push_back(p);
  }
  return s;
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t pos = s.find(sep, start);
    if (pos == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, pos - start));
    start = pos + 1;
  }
}

TEST(GeneratorOptionsTest, ValidateRejectsBadValues) {
  EXPECT_TRUE(GeneratorOptions{}.Validate().ok());
  GeneratorOptions o;
  o.ctr = 0;
  EXPECT_EQ(o.Validate().code(), StatusCode::kInvalidArgument);
  o = {};
  o.ctr = 0.95;
  EXPECT_FALSE(o.Validate().ok());
  o = {};
  o.drift_fraction = 1.5;
  EXPECT_FALSE(o.Validate().ok());
  o = {};
  o.signal = 0;
  EXPECT_FALSE(o.Validate().ok());
  o = {};
  o.max_vocab = 3;
  EXPECT_FALSE(o.Validate().ok());
}

TEST(ClickStreamGeneratorTest, SameSeedSameBytesOtherSeedDifferent) {
  const Stream a = Generate(SmallOptions(7), 3000), b = Generate(SmallOptions(7), 3000);
  const Stream c = Generate(SmallOptions(8), 3000);
  EXPECT_EQ(a.bytes, b.bytes);
  EXPECT_EQ(a.p, b.p);
  EXPECT_NE(a.bytes, c.bytes);
  EXPECT_NE(a.p, c.p);
}

TEST(ClickStreamGeneratorTest, NextRowMatchesAppendRow) {
  ClickStreamGenerator a(SmallOptions(3)), b(SmallOptions(3));
  std::string line, appended;
  for (int i = 0; i < 100; ++i) {
    float pa = 0, pb = 0;
    a.NextRow(&line, &pa);
    appended.clear();
    b.AppendRow(&appended, &pb);
    EXPECT_EQ(line + "\n", appended);
    EXPECT_EQ(pa, pb);
  }
  EXPECT_EQ(a.rows_generated(), 100u);
}

TEST(ClickStreamGeneratorTest, CriteoFormat) {
  const Stream s = Generate(SmallOptions(1), 5000);
  ASSERT_FALSE(s.bytes.empty());
  ASSERT_EQ(s.bytes.back(), '\n');
  std::vector<std::string_view> lines =
      Split(std::string_view(s.bytes).substr(0, s.bytes.size() - 1), '\n');
  ASSERT_EQ(lines.size(), 5000u);
  std::vector<int> missing(kColumns, 0);
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::vector<std::string_view> cols = Split(lines[i], '\t');
    ASSERT_EQ(cols.size(), static_cast<size_t>(kColumns)) << lines[i];
    ASSERT_TRUE(cols[0] == "0" || cols[0] == "1") << lines[i];
    EXPECT_EQ(cols[0] == "1", s.labels[i] == 1.0f);
    for (int c = 1; c < kColumns; ++c) {
      const std::string_view v = cols[c];
      if (v.empty()) {
        ++missing[c];
        continue;
      }
      if (c <= ClickStreamGenerator::kNumIntegerFields) {
        ASSERT_LE(v.size(), 10u) << v;
        ASSERT_TRUE(std::all_of(v.begin(), v.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
            << v;
        ASSERT_TRUE(v.size() == 1 || v[0] != '0') << "leading zero: " << v;
        ASSERT_LE(std::stoll(std::string(v)), 2147483647LL);
      } else {
        ASSERT_EQ(v.size(), 8u) << v;
        ASSERT_TRUE(std::all_of(v.begin(), v.end(), [](char ch) {
          return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f');
        })) << v;
      }
    }
  }
  int fields_with_missing = 0, fields_always_present = 0;
  for (int c = 1; c < kColumns; ++c)
    (missing[c] > 0 ? fields_with_missing : fields_always_present)++;
  EXPECT_GE(fields_with_missing, 10);
  EXPECT_GE(fields_always_present, 10);
}

TEST(ClickStreamGeneratorTest, TruthMatchesFlagCtr) {
  for (double ctr : {0.03, 0.1, 0.25}) {
    GeneratorOptions o = SmallOptions(11);
    o.ctr = ctr;
    const Stream s = Generate(o, 40000);
    BinaryMetrics m;
    m.AddBatch(s.p, s.labels);
    EXPECT_NEAR(m.MeanPrediction(), ctr, 0.1 * ctr) << ctr;
    EXPECT_NEAR(m.Ctr(), ctr, 0.1 * ctr + 4 * std::sqrt(ctr * (1 - ctr) / 40000)) << ctr;
    // Labels are drawn from the truth: it is calibrated.
    EXPECT_NEAR(m.Calibration(), 1.0, 0.1) << ctr;
  }
}

TEST(ClickStreamGeneratorTest, VocabulariesSpanTenToAMillion) {
  ClickStreamGenerator gen(GeneratorOptions{});
  const std::vector<uint32_t> v = gen.VocabSizes();
  ASSERT_EQ(v.size(), static_cast<size_t>(ClickStreamGenerator::kNumCategoricalFields));
  EXPECT_EQ(*std::min_element(v.begin(), v.end()), 10u);
  EXPECT_EQ(*std::max_element(v.begin(), v.end()), 1000000u);
}

TEST(ClickStreamGeneratorTest, CategoricalValuesAreHeavyTailed) {
  GeneratorOptions o;
  o.max_vocab = 200000;
  const Stream s = Generate(o, 50000);
  // C3 (column 16) has the widest vocabulary.
  std::unordered_map<std::string_view, int> counts;
  int present = 0;
  for (std::string_view line : Split(s.bytes, '\n')) {
    if (line.empty()) continue;
    const std::string_view v = Split(line, '\t')[16];
    if (v.empty()) continue;
    ++counts[v];
    ++present;
  }
  std::vector<int> freq;
  for (const auto& [value, n] : counts) freq.push_back(n);
  std::sort(freq.rbegin(), freq.rend());
  ASSERT_GT(freq.size(), 1000u);
  EXPECT_GT(freq[0], 200 * freq[freq.size() / 2]);  // the top value vs the median value
  int top10 = 0;
  for (int i = 0; i < 10; ++i) top10 += freq[i];
  EXPECT_GT(top10, present / 5);  // ten values hold a large share...
  EXPECT_GT(freq.size(), 5000u);  // ...of a long tail
}

TEST(ClickStreamGeneratorTest, IntegerFeaturesAreHeavyTailed) {
  const Stream s = Generate(SmallOptions(5), 50000);
  std::vector<long long> values;
  for (std::string_view line : Split(s.bytes, '\n')) {
    if (line.empty()) continue;
    for (int c = 1; c <= ClickStreamGenerator::kNumIntegerFields; ++c) {
      const std::string_view v = Split(line, '\t')[c];
      if (!v.empty()) values.push_back(std::stoll(std::string(v)));
    }
  }
  std::sort(values.begin(), values.end());
  const long long median = values[values.size() / 2], p999 = values[values.size() * 999 / 1000];
  EXPECT_GT(p999, 50 * std::max(median, 1LL));
}

TEST(ClickStreamGeneratorTest, DriftChangesTruthAndBringsNewValues) {
  constexpr size_t kDriftAt = 20000, kRows = 40000;
  GeneratorOptions drifting = SmallOptions(9), steady = SmallOptions(9);
  drifting.drift_every = kDriftAt;
  drifting.drift_fraction = 0.2;
  steady.drift_every = 0;
  ClickStreamGenerator gd(drifting), gs(steady);
  std::string ld, ls;
  size_t same_before = 0, differ_after = 0, new_after_drift = 0, new_steady = 0;
  std::unordered_set<std::string> seen_before;
  for (size_t i = 0; i < kRows; ++i) {
    float pd = 0, ps = 0;
    gd.NextRow(&ld, &pd);
    gs.NextRow(&ls, &ps);
    const std::string cd(Split(ld, '\t')[16]), cs(Split(ls, '\t')[16]);
    if (i < kDriftAt) {
      same_before += ld == ls && pd == ps;
      seen_before.insert(cd);
    } else {
      differ_after += pd != ps;
      new_after_drift += !seen_before.count(cd);
      new_steady += !seen_before.count(cs);
    }
  }
  EXPECT_EQ(gd.drifts(), 1u);
  EXPECT_EQ(gs.drifts(), 0u);
  EXPECT_EQ(same_before, kDriftAt);
  EXPECT_GT(differ_after, (kRows - kDriftAt) / 2);
  EXPECT_GT(new_after_drift, new_steady + (kRows - kDriftAt) / 50);
}

TEST(ClickStreamGeneratorTest, BestAucFromTruthIsRealistic) {
  GeneratorOptions o = SmallOptions(2);
  o.drift_every = 50000;
  const Stream s = Generate(o, 150000);
  const double auc = ExactAuc(s.p, s.labels);
  EXPECT_GT(auc, 0.7);
  EXPECT_LT(auc, 0.95);
  BinaryMetrics truth, constant;
  truth.AddBatch(s.p, s.labels);
  const std::vector<float> ctr(s.p.size(), static_cast<float>(truth.Ctr()));
  constant.AddBatch(ctr, s.labels);
  EXPECT_LT(truth.LogLoss(), 0.9 * constant.LogLoss());
}

TEST(AppendProbabilityLineTest, Format) {
  std::string out;
  AppendProbabilityLine(0.1234567f, &out);
  AppendProbabilityLine(0.0f, &out);
  AppendProbabilityLine(1.0f, &out);
  AppendProbabilityLine(0.5f, &out);
  EXPECT_EQ(out, "0.1234567\n0.0000000\n1.0000000\n0.5000000\n");
}

}  // namespace
}  // namespace eddy::worker
