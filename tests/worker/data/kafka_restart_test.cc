// A broker restart in the middle of an unbounded read loses and repeats nothing.
// Restarts the broker of the default state dir (scripts/kafka.sh restart), so
// ctest runs it RUN_SERIAL: the other Kafka tests would see the broker vanish.
//   eval "$(scripts/kafka.sh start)"; export KAFKA_BOOTSTRAP; ctest -L kafka
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/worker/data/kafka_test_util.h"
#include "worker/data/kafka.h"

namespace eddy::worker {
namespace {

using namespace kafka_testing;  // NOLINT

// Rows read by a source on a thread of its own, until `want` rows or an error.
class Reader {
 public:
  Reader(std::unique_ptr<KafkaSource> source, size_t want)
      : source_(std::move(source)), want_(want), thread_([this] { Run(); }) {}
  ~Reader() {
    source_->RequestStop();
    thread_.join();
  }

  // Waits until `n` rows were read or the reader ended; true if n were read.
  bool WaitForRows(size_t n, milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return rows_.size() >= n || done_; });
    return rows_.size() >= n;
  }
  // Waits for the end of the reading; true if it ended.
  bool WaitForEnd(milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return done_; });
  }
  std::vector<Row> rows() {
    std::lock_guard<std::mutex> lock(mu_);
    return rows_;
  }
  Status status() {
    std::lock_guard<std::mutex> lock(mu_);
    return status_;
  }
  KafkaSource& source() { return *source_; }

 private:
  void Run() {
    Line line;
    Status status;
    for (;;) {
      StatusOr<bool> more = source_->Next(&line);
      if (!more.ok()) {
        status = more.status();
        break;
      }
      if (!*more) break;
      std::lock_guard<std::mutex> lock(mu_);
      rows_.push_back({std::string(line.text), line.row_origin, std::string(line.origin),
                       line.line_number, line.truncated});
      cv_.notify_all();
      if (rows_.size() >= want_) break;
    }
    std::lock_guard<std::mutex> lock(mu_);
    status_ = status;
    done_ = true;
    cv_.notify_all();
  }

  std::unique_ptr<KafkaSource> source_;
  const size_t want_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Row> rows_;  // guarded by mu_
  bool done_ = false;      // guarded by mu_
  Status status_;          // guarded by mu_
  std::thread thread_;     // last
};

TEST_F(KafkaTest, BrokerRestartLosesAndRepeatsNothing) {
  const KafkaUri uri = NewTopic("restart", 4);
  constexpr int kBefore = 3000, kAfter = 2000;
  std::set<std::string> expected;
  {
    auto producer = Producer(uri);
    for (int i = 0; i < kBefore; ++i) {
      const std::string row = "a" + std::to_string(i);
      ASSERT_TRUE(producer->Send(-1, row).ok());
      expected.insert(row);
    }
    ASSERT_TRUE(producer->Flush(kTimeout).ok());
  }
  // A patient reader (the broker is back well within its timeout) and an
  // impatient one (500 ms without a broker is too long for it).
  // Patient: longer than scripts/kafka.sh waits for a broker to start (60 s),
  // since a loaded machine may take that long to restart one.
  KafkaSourceOptions patient_options;
  patient_options.uri = uri;
  patient_options.partitions = {0, 1, 2, 3};
  patient_options.broker_timeout = milliseconds(120000);
  StatusOr<std::unique_ptr<KafkaSource>> patient_source = KafkaSource::Open(patient_options);
  ASSERT_TRUE(patient_source.ok()) << patient_source.status();
  Reader reader(std::move(patient_source).value(), kBefore + kAfter);
  KafkaSourceOptions impatient_options;
  impatient_options.uri = uri;
  impatient_options.partitions = {0, 1, 2, 3};
  impatient_options.broker_timeout = milliseconds(500);
  StatusOr<std::unique_ptr<KafkaSource>> impatient_source = KafkaSource::Open(impatient_options);
  ASSERT_TRUE(impatient_source.ok()) << impatient_source.status();
  Reader impatient(std::move(impatient_source).value(), SIZE_MAX);

  ASSERT_TRUE(reader.WaitForRows(kBefore / 2, kTimeout));
  const std::string restart = EDDY_SOURCE_DIR "/scripts/kafka.sh restart";
  ASSERT_EQ(std::system(restart.c_str()), 0) << restart;

  {
    auto producer = Producer(uri);
    for (int i = 0; i < kAfter; ++i) {
      const std::string row = "b" + std::to_string(i);
      ASSERT_TRUE(producer->Send(-1, row).ok());
      expected.insert(row);
    }
    ASSERT_TRUE(producer->Flush(kTimeout).ok());
  }
  ASSERT_TRUE(reader.WaitForEnd(milliseconds(150000))) << reader.rows().size() << " rows read";
  EXPECT_TRUE(reader.status().ok()) << reader.status();
  const std::vector<Row> rows = reader.rows();
  std::multiset<std::string> read;
  std::map<int32_t, int64_t> next_offset;
  for (const Row& r : rows) {
    read.insert(r.text);
    // Per partition, offsets follow each other without a gap or a repeat.
    EXPECT_EQ(r.origin.offset, next_offset[r.origin.partition]) << r.line_origin;
    next_offset[r.origin.partition] = r.origin.offset + 1;
  }
  EXPECT_EQ(read, std::multiset<std::string>(expected.begin(), expected.end()));
  EXPECT_GT(reader.source().broker_errors(), 0u) << "the restart went unnoticed";

  // The impatient reader gave up, naming the broker.
  ASSERT_TRUE(impatient.WaitForEnd(kTimeout));
  EXPECT_EQ(impatient.status().code(), StatusCode::kUnavailable) << impatient.status();
  EXPECT_NE(impatient.status().message().find("Kafka broker(s) " + uri.brokers + " unreachable"),
            std::string::npos)
      << impatient.status();
}

}  // namespace
}  // namespace eddy::worker
