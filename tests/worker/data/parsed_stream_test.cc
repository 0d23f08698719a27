#include "worker/data/parsed_stream.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

namespace eddy::worker {
namespace {

namespace fs = std::filesystem;

class TempFile {
 public:
  explicit TempFile(const std::string& content) {
    std::string tmpl = (fs::temp_directory_path() / "eddy_stream_test_XXXXXX").string();
    int fd = mkstemp(tmpl.data());
    CHECK_GE(fd, 0);
    close(fd);
    path_ = tmpl;
    std::ofstream(path_, std::ios::binary) << content;
  }
  ~TempFile() { fs::remove(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Row i: label i % 2, I1 = i, C1 = hex(i); every `bad_every`-th row has a bad label.
std::string CriteoRows(int n, int bad_every = 0) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    bool bad = bad_every > 0 && i % bad_every == bad_every - 1;
    out += bad ? "7" : std::to_string(i % 2);
    out += "\t" + std::to_string(i);
    for (int f = 1; f < 13; ++f) out += "\t";
    char hex[16];
    snprintf(hex, sizeof(hex), "%x", i);
    out += std::string("\t") + hex;
    for (int f = 1; f < 26; ++f) out += "\t";
    out += "\n";
  }
  return out;
}

std::unique_ptr<LineSource> Files(const std::string& path, SourceOptions options = {}) {
  auto source = FileListSource::Open({path}, options);
  CHECK(source.ok()) << source.status();
  return std::move(*source);
}

TEST(ParsedStreamTest, DeliversEveryGoodRowInOrderInBatches) {
  TempFile file(CriteoRows(2500, /*bad_every=*/500));
  ParsedStreamOptions options;
  options.batch_size = 100;
  options.queue_depth = 2;
  ParsedStream stream(Files(file.path()), MakeCriteoParser(), options);
  std::vector<float> labels;
  std::vector<uint64_t> ids;
  size_t batches = 0;
  while (true) {
    auto batch = stream.NextBatch();
    ASSERT_TRUE(batch.ok()) << batch.status();
    if (!batch->has_value()) break;
    const ExampleBatch& b = **batch;
    EXPECT_LE(b.size(), 100u);
    EXPECT_EQ(b.dense_dim, 13u);
    EXPECT_EQ(b.dense.size(), b.size() * 13);
    EXPECT_EQ(b.offsets.size(), b.size() + 1);
    labels.insert(labels.end(), b.labels.begin(), b.labels.end());
    for (size_t r = 0; r < b.size(); ++r) {
      ASSERT_EQ(b.Ids(r).size(), 2u);
      ids.push_back(b.Ids(r)[1]);
    }
    ++batches;
  }
  ASSERT_EQ(labels.size(), 2495u);
  EXPECT_EQ(batches, 25u);
  // Rows come in file order: the categorical id of good row j is that of line i.
  size_t j = 0;
  for (int i = 0; i < 2500; ++i) {
    if (i % 500 == 499) continue;
    EXPECT_EQ(labels[j], static_cast<float>(i % 2));
    EXPECT_EQ(ids[j], FeatureId(13, static_cast<uint64_t>(i)));
    ++j;
  }
  EXPECT_EQ(stream.rows(), 2500u);
  EXPECT_EQ(stream.bad_rows(), 5u);
  // After the end it stays at the end.
  auto again = stream.NextBatch();
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(again->has_value());
}

TEST(ParsedStreamTest, ErrorBudgetFailureReachesTheConsumer) {
  TempFile file(CriteoRows(3000, /*bad_every=*/10));  // 10% bad
  ParsedStreamOptions options;
  options.batch_size = 64;
  options.budget.max_bad_rate = 0.05;
  options.budget.min_rows = 1000;
  options.budget.log_first = 2;
  ParsedStream stream(Files(file.path()), MakeCriteoParser(), options);
  size_t good = 0;
  Status error;
  while (true) {
    auto batch = stream.NextBatch();
    if (!batch.ok()) {
      error = batch.status();
      break;
    }
    ASSERT_TRUE(batch->has_value()) << "the stream should have failed";
    good += (*batch)->size();
  }
  EXPECT_EQ(error.code(), StatusCode::kDataLoss);
  EXPECT_NE(error.message().find("bad_label 100"), std::string::npos) << error;
  EXPECT_EQ(good, 900u);  // the 1000 rows read before the check, minus the bad ones
  // The error is sticky.
  EXPECT_EQ(stream.NextBatch().status().code(), StatusCode::kDataLoss);
}

TEST(ParsedStreamTest, TruncatedLinesCountAsTooLong) {
  std::string rows = CriteoRows(3);
  rows.insert(rows.find('\n') + 1, std::string(5000, '1') + "\n");
  TempFile file(rows);
  SourceOptions source_options;
  source_options.max_line_bytes = 1000;
  ParsedStreamOptions options;
  options.budget.max_bad_rate = 1;
  ParsedStream stream(Files(file.path(), source_options), MakeCriteoParser(), options);
  auto batch = stream.NextBatch();
  ASSERT_TRUE(batch.ok());
  ASSERT_TRUE(batch->has_value());
  EXPECT_EQ((*batch)->size(), 3u);
  EXPECT_EQ(stream.bad_rows(), 1u);
}

TEST(ParsedStreamTest, EmptySourceEndsAtOnce) {
  TempFile file("");
  ParsedStream stream(Files(file.path()), MakeLibsvmParser());
  auto batch = stream.NextBatch();
  ASSERT_TRUE(batch.ok());
  EXPECT_FALSE(batch->has_value());
}

TEST(ParsedStreamTest, SmallQueueAndSlowConsumerLoseNothing) {
  TempFile file(CriteoRows(500));
  ParsedStreamOptions options;
  options.batch_size = 1;
  options.queue_depth = 1;
  ParsedStream stream(Files(file.path()), MakeCriteoParser(), options);
  size_t rows = 0;
  while (true) {
    auto batch = stream.NextBatch();
    ASSERT_TRUE(batch.ok());
    if (!batch->has_value()) break;
    rows += (*batch)->size();
  }
  EXPECT_EQ(rows, 500u);
}

TEST(ParsedStreamTest, DestroyWhileTheProducerWaitsForRoom) {
  TempFile file(CriteoRows(1000));
  ParsedStreamOptions options;
  options.batch_size = 10;
  options.queue_depth = 1;
  auto stream = std::make_unique<ParsedStream>(Files(file.path()), MakeCriteoParser(), options);
  auto batch = stream->NextBatch();
  ASSERT_TRUE(batch.ok());
  EXPECT_TRUE(batch->has_value());
  stream.reset();  // must not hang or leak
}

TEST(ParsedStreamTest, StopEndsAFollowedStreamPromptly) {
  TempFile file("1 3:1\n0 4:1\n");
  SourceOptions source_options;
  source_options.follow_wait_ms = 60000;
  auto follow = FollowFileSource::Open(file.path(), source_options);
  ASSERT_TRUE(follow.ok());
  ParsedStreamOptions options;
  options.batch_size = 1;
  ParsedStream stream(std::move(*follow), MakeLibsvmParser(), options);
  for (int i = 0; i < 2; ++i) {
    auto batch = stream.NextBatch();
    ASSERT_TRUE(batch.ok());
    ASSERT_TRUE(batch->has_value());
  }
  std::ofstream(file.path(), std::ios::app) << "1 5:1\n";
  auto third = stream.NextBatch();
  ASSERT_TRUE(third.ok());
  ASSERT_TRUE(third->has_value());
  EXPECT_EQ((*third)->ids[0], FeatureId(0, 5));
  // The consumer waits for a row that never comes; Stop() from another thread ends it.
  auto start = std::chrono::steady_clock::now();
  std::thread stopper([&] { stream.Stop(); });
  auto end = stream.NextBatch();
  stopper.join();
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST(ParsedStreamTest, ShardedWorkersTogetherSeeEveryRowOnce) {
  TempFile file(CriteoRows(1001));
  std::vector<int> seen(1001, 0);
  const uint32_t workers = 3;
  for (uint32_t k = 0; k < workers; ++k) {
    ParsedStream stream(std::make_unique<ShardedSource>(Files(file.path()), k, workers),
                        MakeCriteoParser());
    while (true) {
      auto batch = stream.NextBatch();
      ASSERT_TRUE(batch.ok());
      if (!batch->has_value()) break;
      for (size_t r = 0; r < (*batch)->size(); ++r) {
        // I1 = i < 2^k buckets are not unique; recover i from C1's id instead.
        uint64_t id = (*batch)->Ids(r)[1];
        for (int i = static_cast<int>(k); i < 1001; i += workers) {
          if (FeatureId(13, static_cast<uint64_t>(i)) == id) {
            ++seen[i];
            break;
          }
        }
      }
    }
  }
  for (int i = 0; i < 1001; ++i) EXPECT_EQ(seen[i], 1) << i;
}

}  // namespace
}  // namespace eddy::worker
