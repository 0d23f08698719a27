#include "worker/data/parser.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

namespace eddy::worker {
namespace {

// A Criteo row from 13 integer and 26 categorical column texts.
std::string CriteoRow(std::string label, std::vector<std::string> ints,
                      std::vector<std::string> cats) {
  ints.resize(13);
  cats.resize(26);
  std::string row = label;
  for (const auto& s : ints) row += "\t" + s;
  for (const auto& s : cats) row += "\t" + s;
  return row;
}

std::vector<std::string> FullInts() {
  return {"0", "1", "2", "3", "7", "8", "100", "-1", "5", "6", "9", "10", "11"};
}
std::vector<std::string> FullCats() {
  std::vector<std::string> c;
  for (int i = 0; i < 26; ++i) c.push_back(i % 2 ? "68fd1e64" : "05db9164");
  return c;
}

RowError ErrorOf(const Parser& p, std::string_view line) {
  Example e;
  Status s = p.Parse(line, &e);
  EXPECT_FALSE(s.ok()) << line;
  std::optional<RowError> kind = RowErrorOf(s);
  EXPECT_TRUE(kind.has_value()) << s;
  return kind.value_or(RowError::kEmptyLine);
}

TEST(CriteoParserTest, FullRowGivesOneDistinctIdPerFieldAndDenseLogs) {
  auto p = MakeCriteoParser();
  Example e;
  ASSERT_TRUE(p->Parse(CriteoRow("1", FullInts(), FullCats()), &e).ok());
  EXPECT_EQ(e.label, 1.0f);
  ASSERT_EQ(e.ids.size(), 39u);
  ASSERT_EQ(e.fields.size(), 39u);
  ASSERT_EQ(e.values.size(), 39u);
  for (uint32_t i = 0; i < 39; ++i) EXPECT_EQ(e.fields[i], i);
  for (float v : e.values) EXPECT_EQ(v, 1.0f);
  // The same categorical value in different fields gives different ids.
  EXPECT_EQ(std::set<uint64_t>(e.ids.begin(), e.ids.end()).size(), 39u);
  ASSERT_EQ(e.dense.size(), 13u);
  EXPECT_FLOAT_EQ(e.dense[0], 0.0f);
  EXPECT_FLOAT_EQ(e.dense[1], std::log(2.0f));
  EXPECT_FLOAT_EQ(e.dense[6], std::log(101.0f));
  EXPECT_FLOAT_EQ(e.dense[7], 0.0f);  // negative -> 0
  // Buckets: floor(log2(1 + x)).
  EXPECT_EQ(e.ids[0], FeatureId(0, 0));
  EXPECT_EQ(e.ids[2], FeatureId(2, 1));  // x = 2
  EXPECT_EQ(e.ids[3], FeatureId(3, 2));  // x = 3
  EXPECT_EQ(e.ids[4], FeatureId(4, 3));  // x = 7
  EXPECT_EQ(e.ids[5], FeatureId(5, 3));  // x = 8
  EXPECT_EQ(e.ids[7], FeatureId(7, kCriteoNegativeBucket));
  EXPECT_EQ(e.ids[13], FeatureId(13, 0x05db9164));
  EXPECT_EQ(e.ids[14], FeatureId(14, 0x68fd1e64));
}

TEST(CriteoParserTest, IdsAreDeterministicAcrossParsersAndCalls) {
  std::string row = CriteoRow("0", FullInts(), FullCats());
  Example a, b;
  ASSERT_TRUE(MakeCriteoParser()->Parse(row, &a).ok());
  ASSERT_TRUE(MakeCriteoParser()->Parse(row, &b).ok());
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.label, 0.0f);
  // Reusing an Example clears it first.
  ASSERT_TRUE(MakeCriteoParser()->Parse(row, &a).ok());
  EXPECT_EQ(a.ids, b.ids);
  EXPECT_EQ(a.dense, b.dense);
}

TEST(CriteoParserTest, NegativeValuesShareOneBucketPerField) {
  auto p = MakeCriteoParser();
  Example a, b;
  ASSERT_TRUE(p->Parse(CriteoRow("0", {"-1"}, {}), &a).ok());
  ASSERT_TRUE(p->Parse(CriteoRow("0", {"-100"}, {}), &b).ok());
  ASSERT_EQ(a.ids.size(), 1u);
  EXPECT_EQ(a.ids, b.ids);
}

TEST(CriteoParserTest, MissingFieldsGiveNoIdAndZeroDense) {
  auto p = MakeCriteoParser();
  Example e;
  ASSERT_TRUE(p->Parse(CriteoRow("0", {"", "5"}, {"", "", "a"}), &e).ok());
  EXPECT_EQ(e.fields, (std::vector<uint32_t>{1, 15}));
  EXPECT_EQ(e.ids, (std::vector<uint64_t>{FeatureId(1, 2), FeatureId(15, 0xa)}));
  EXPECT_EQ(e.dense.size(), 13u);
  EXPECT_FLOAT_EQ(e.dense[0], 0.0f);
  EXPECT_FLOAT_EQ(e.dense[1], std::log(6.0f));
  // All missing: a valid row with no ids.
  ASSERT_TRUE(p->Parse(CriteoRow("1", {}, {}), &e).ok());
  EXPECT_TRUE(e.ids.empty());
  EXPECT_EQ(e.dense, std::vector<float>(13, 0.0f));
}

TEST(CriteoParserTest, LargeIntegersGetExactDenseAndBucket) {
  Example e;
  ASSERT_TRUE(MakeCriteoParser()
                  ->Parse(CriteoRow("0", {"4095", "4096", "9223372036854775807"}, {}), &e)
                  .ok());
  EXPECT_FLOAT_EQ(e.dense[0], std::log1p(4095.0f));
  EXPECT_FLOAT_EQ(e.dense[1], std::log1p(4096.0f));
  EXPECT_FLOAT_EQ(e.dense[2], static_cast<float>(std::log1p(9223372036854775807.0)));
  EXPECT_EQ(e.ids, (std::vector<uint64_t>{FeatureId(0, 12), FeatureId(1, 12), FeatureId(2, 63)}));
}

TEST(CriteoParserTest, CrlfIsAccepted) {
  Example a, b;
  std::string row = CriteoRow("1", FullInts(), FullCats());
  ASSERT_TRUE(MakeCriteoParser()->Parse(row + "\r", &a).ok());
  ASSERT_TRUE(MakeCriteoParser()->Parse(row, &b).ok());
  EXPECT_EQ(a.ids, b.ids);
}

TEST(CriteoParserTest, BadRowsReportTheirKind) {
  auto p = MakeCriteoParser();
  std::string good = CriteoRow("1", FullInts(), FullCats());
  EXPECT_EQ(ErrorOf(*p, good + "\textra"), RowError::kWrongColumnCount);
  EXPECT_EQ(ErrorOf(*p, good.substr(0, good.rfind('\t'))), RowError::kWrongColumnCount);
  EXPECT_EQ(ErrorOf(*p, "1 2 3"), RowError::kWrongColumnCount);
  EXPECT_EQ(ErrorOf(*p, ""), RowError::kEmptyLine);
  EXPECT_EQ(ErrorOf(*p, "\r"), RowError::kEmptyLine);
  EXPECT_EQ(ErrorOf(*p, CriteoRow("2", {}, {})), RowError::kBadLabel);
  EXPECT_EQ(ErrorOf(*p, CriteoRow("", {}, {})), RowError::kBadLabel);
  EXPECT_EQ(ErrorOf(*p, CriteoRow("1.0", {}, {})), RowError::kBadLabel);
  EXPECT_EQ(ErrorOf(*p, CriteoRow("0", {"12x"}, {})), RowError::kBadNumber);
  EXPECT_EQ(ErrorOf(*p, CriteoRow("0", {"1.5"}, {})), RowError::kBadNumber);
  EXPECT_EQ(ErrorOf(*p, CriteoRow("0", {"99999999999999999999999"}, {})), RowError::kBadNumber);
  EXPECT_EQ(ErrorOf(*p, CriteoRow("0", {}, {"xyz"})), RowError::kBadNumber);
  EXPECT_EQ(ErrorOf(*p, CriteoRow("0", {}, {"123456789"})), RowError::kBadNumber);  // > 32 bits
  EXPECT_EQ(ErrorOf(*p, CriteoRow("0", {}, {"-1"})), RowError::kBadNumber);
  std::string binary = good;
  binary[5] = '\0';
  EXPECT_EQ(ErrorOf(*p, binary), RowError::kBinary);
  EXPECT_EQ(ErrorOf(*p, std::string("\x01\x02\xff\x7f garbage", 12)), RowError::kBinary);
  std::string cr_inside = good;
  cr_inside[3] = '\r';
  EXPECT_EQ(ErrorOf(*p, cr_inside), RowError::kBinary);
}

TEST(CriteoParserTest, OverLongLineIsRejected) {
  ParserOptions options;
  options.max_line_bytes = 64;
  auto p = MakeCriteoParser(options);
  EXPECT_EQ(ErrorOf(*p, std::string(65, 'a')), RowError::kTooLong);
  EXPECT_EQ(ErrorOf(*MakeCriteoParser(), std::string((1 << 20) + 1, '1')), RowError::kTooLong);
  // The limit applies after stripping "\r".
  Example e;
  std::string row = CriteoRow("0", {}, {});
  options.max_line_bytes = row.size();
  EXPECT_TRUE(MakeCriteoParser(options)->Parse(row + "\r", &e).ok());
}

TEST(LibsvmParserTest, ParsesLabelsIdsAndValues) {
  auto p = MakeLibsvmParser();
  Example e;
  ASSERT_TRUE(p->Parse("1 3:1 10:0.5  7:2\r", &e).ok());
  EXPECT_EQ(e.label, 1.0f);
  EXPECT_EQ(e.ids, (std::vector<uint64_t>{FeatureId(0, 3), FeatureId(0, 10), FeatureId(0, 7)}));
  EXPECT_EQ(e.fields, (std::vector<uint32_t>{0, 0, 0}));
  EXPECT_EQ(e.values, (std::vector<float>{1.0f, 0.5f, 2.0f}));
  EXPECT_TRUE(e.dense.empty());
  EXPECT_EQ(p->dense_dim(), 0u);
  for (const char* label : {"-1", "0", "0.0"}) {
    ASSERT_TRUE(p->Parse(std::string(label) + " 1:1", &e).ok()) << label;
    EXPECT_EQ(e.label, 0.0f);
  }
  for (const char* label : {"+1", "1", "1.0"}) {
    ASSERT_TRUE(p->Parse(std::string(label) + "\t1:1", &e).ok()) << label;
    EXPECT_EQ(e.label, 1.0f);
  }
  ASSERT_TRUE(p->Parse("0", &e).ok());  // no features
  EXPECT_TRUE(e.ids.empty());
}

TEST(LibsvmParserTest, BadRowsReportTheirKind) {
  auto p = MakeLibsvmParser();
  EXPECT_EQ(ErrorOf(*p, "2 1:1"), RowError::kBadLabel);
  EXPECT_EQ(ErrorOf(*p, "yes 1:1"), RowError::kBadLabel);
  EXPECT_EQ(ErrorOf(*p, "1 13"), RowError::kBadToken);
  EXPECT_EQ(ErrorOf(*p, "1 x:1"), RowError::kBadNumber);
  EXPECT_EQ(ErrorOf(*p, "1 -3:1"), RowError::kBadNumber);
  EXPECT_EQ(ErrorOf(*p, "1 3:"), RowError::kBadNumber);
  EXPECT_EQ(ErrorOf(*p, "1 3:abc"), RowError::kBadNumber);
  EXPECT_EQ(ErrorOf(*p, "1 3:nan"), RowError::kBadNumber);
  EXPECT_EQ(ErrorOf(*p, std::string("1 3:1\0", 6)), RowError::kBinary);
  EXPECT_EQ(ErrorOf(*p, "   "), RowError::kEmptyLine);
  ParserOptions options;
  options.max_line_bytes = 8;
  EXPECT_EQ(ErrorOf(*MakeLibsvmParser(options), "1 1:1 2:1 3:1"), RowError::kTooLong);
}

TEST(LibffmParserTest, IdsDependOnFieldAndIndex) {
  auto p = MakeLibffmParser();
  Example e;
  ASSERT_TRUE(p->Parse("-1 1:5:1 2:5:0.25 1:6:1", &e).ok());
  EXPECT_EQ(e.label, 0.0f);
  EXPECT_EQ(e.ids, (std::vector<uint64_t>{FeatureId(1, 5), FeatureId(2, 5), FeatureId(1, 6)}));
  EXPECT_NE(e.ids[0], e.ids[1]);
  EXPECT_EQ(e.fields, (std::vector<uint32_t>{1, 2, 1}));
  EXPECT_EQ(e.values, (std::vector<float>{1.0f, 0.25f, 1.0f}));
  EXPECT_EQ(ErrorOf(*p, "1 5:1"), RowError::kBadToken);
  EXPECT_EQ(ErrorOf(*p, "1 5"), RowError::kBadToken);
  EXPECT_EQ(ErrorOf(*p, "1 a:5:1"), RowError::kBadNumber);
  EXPECT_EQ(ErrorOf(*p, "3 1:5:1"), RowError::kBadLabel);
}

TEST(ParserTest, MakeParserByName) {
  for (const char* name : {"criteo", "libsvm", "libffm"}) {
    auto p = MakeParser(name);
    ASSERT_TRUE(p.ok());
    EXPECT_EQ((*p)->name(), name);
  }
  EXPECT_EQ(MakeParser("csv").status().code(), StatusCode::kInvalidArgument);
}

TEST(ParserTest, RowErrorNamesRoundTrip) {
  for (int i = 0; i < kNumRowErrors; ++i) {
    RowError kind = static_cast<RowError>(i);
    EXPECT_NE(RowErrorName(kind), "unknown");
    EXPECT_EQ(RowErrorOf(RowErrorStatus(kind, "detail")), kind);
  }
  EXPECT_FALSE(RowErrorOf(OkStatus()).has_value());
  EXPECT_FALSE(RowErrorOf(InvalidArgumentError("something else")).has_value());
  EXPECT_FALSE(RowErrorOf(DataLossError("bad_number: not a row error code")).has_value());
}

TEST(ExampleBatchTest, AppendKeepsRowsApart) {
  auto p = MakeCriteoParser();
  ExampleBatch batch;
  batch.dense_dim = p->dense_dim();
  Example e;
  ASSERT_TRUE(p->Parse(CriteoRow("1", FullInts(), FullCats()), &e).ok());
  batch.Append(e);
  ASSERT_TRUE(p->Parse(CriteoRow("0", {"", "5"}, {"", "", "a"}), &e).ok());
  batch.Append(e);
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch.Ids(0).size(), 39u);
  EXPECT_EQ(std::vector<uint64_t>(batch.Ids(1).begin(), batch.Ids(1).end()), e.ids);
  EXPECT_EQ(std::vector<uint32_t>(batch.Fields(1).begin(), batch.Fields(1).end()), e.fields);
  EXPECT_EQ(batch.Values(1).size(), 2u);
  EXPECT_FLOAT_EQ(batch.Dense(1)[1], std::log(6.0f));
  EXPECT_EQ(batch.labels, (std::vector<float>{1.0f, 0.0f}));
  batch.Clear();
  EXPECT_TRUE(batch.empty());
  EXPECT_EQ(batch.offsets, std::vector<uint32_t>{0});
}

}  // namespace
}  // namespace eddy::worker

namespace eddy::worker {
namespace {

TEST(ExampleBatchTest, TruncateKeepsTheFirstRows) {
  ExampleBatch batch;
  batch.dense_dim = 1;
  for (int r = 0; r < 3; ++r) {
    Example e;
    e.label = static_cast<float>(r);
    for (int i = 0; i <= r; ++i) {
      e.ids.push_back(10 * r + i);
      e.fields.push_back(i);
      e.values.push_back(1);
    }
    e.dense = {static_cast<float>(r)};
    batch.Append(e);
  }
  batch.Truncate(5);  // more than it holds: unchanged
  EXPECT_EQ(batch.size(), 3u);
  batch.Truncate(2);
  ASSERT_EQ(batch.size(), 2u);
  EXPECT_EQ(batch.ids, (std::vector<uint64_t>{0, 10, 11}));
  EXPECT_EQ(batch.fields.size(), 3u);
  EXPECT_EQ(batch.values.size(), 3u);
  EXPECT_EQ(batch.offsets, (std::vector<uint32_t>{0, 1, 3}));
  EXPECT_EQ(batch.dense, (std::vector<float>{0, 1}));
  EXPECT_EQ(batch.Ids(1).size(), 2u);
}

}  // namespace
}  // namespace eddy::worker

namespace eddy::worker {
namespace {

TEST(ParserTest, CriteoIntegerFeaturesAsDenseBucketsOrBoth) {
  // I1 = 3, I2 missing, I3 = -1, the other integers 0; C1 = "0000000a", C2 missing.
  std::string line = "1\t3\t\t-1";
  for (int i = 3; i < 13; ++i) line += "\t0";
  line += "\t0000000a";
  for (int c = 1; c < 26; ++c) line += "\t";
  Example both, dense, buckets;
  ASSERT_TRUE(MakeCriteoParser()->Parse(line, &both).ok());
  ASSERT_TRUE(
      MakeCriteoParser({.criteo_integers = CriteoIntegers::kDense})->Parse(line, &dense).ok());
  ASSERT_TRUE(
      MakeCriteoParser({.criteo_integers = CriteoIntegers::kBuckets})->Parse(line, &buckets).ok());
  // both: 12 integer ids (I2 missing) + 1 categorical at field 13, 13 dense inputs.
  EXPECT_EQ(both.ids.size(), 13u);
  EXPECT_EQ(both.fields.back(), 13u);
  ASSERT_EQ(both.dense.size(), 13u);
  EXPECT_FLOAT_EQ(both.dense[0], std::log1p(3.0f));
  // dense: only the categorical, at field 0; the same dense inputs.
  ASSERT_EQ(dense.ids.size(), 1u);
  EXPECT_EQ(dense.fields[0], 0u);
  EXPECT_EQ(both.ids.back(), FeatureId(13, 0xa));
  EXPECT_EQ(dense.ids[0], FeatureId(0, 0xa));
  EXPECT_EQ(dense.dense, both.dense);
  // buckets: the ids of both, no dense inputs.
  EXPECT_EQ(buckets.ids, both.ids);
  EXPECT_EQ(buckets.fields, both.fields);
  EXPECT_TRUE(buckets.dense.empty());
  EXPECT_EQ(MakeCriteoParser({.criteo_integers = CriteoIntegers::kBuckets})->dense_dim(), 0u);
  EXPECT_EQ(CriteoFieldCount(CriteoIntegers::kDense), 26);
  EXPECT_EQ(CriteoFieldCount(CriteoIntegers::kBoth), 39);
  EXPECT_EQ(CriteoDenseDim(CriteoIntegers::kBuckets), 0);
  for (auto mode : {CriteoIntegers::kBoth, CriteoIntegers::kDense, CriteoIntegers::kBuckets}) {
    auto parsed = ParseCriteoIntegers(CriteoIntegersName(mode));
    ASSERT_TRUE(parsed.ok());
    EXPECT_EQ(*parsed, mode);
  }
  EXPECT_FALSE(ParseCriteoIntegers("log").ok());
}

}  // namespace
}  // namespace eddy::worker
