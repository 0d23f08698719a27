// Helpers of the Kafka tests (kafka_test, kafka_restart_test): the broker's
// address from KAFKA_BOOTSTRAP, fresh topics, producers, sources and reading.
// Thread-safety: test code; KafkaTest's members are for the test's thread.
#ifndef EDDY_TESTS_WORKER_DATA_KAFKA_TEST_UTIL_H_
#define EDDY_TESTS_WORKER_DATA_KAFKA_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "worker/data/kafka.h"

namespace eddy::worker::kafka_testing {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

inline constexpr milliseconds kTimeout{30000};

inline std::string Bootstrap() {
  const char* b = std::getenv("KAFKA_BOOTSTRAP");
  return b != nullptr ? b : "";
}

// A topic name no other test (or earlier run against the same broker) uses.
inline std::string UniqueTopic(const std::string& what) {
  static std::atomic<int> counter{0};
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  return "eddy-" + what + "-" + std::to_string(getpid()) + "-" +
         std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(now).count()) + "-" +
         std::to_string(counter++);
}

// A loopback port nobody listens on.
inline int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  CHECK_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  CHECK_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(fd);
  return ntohs(addr.sin_port);
}

struct Row {
  std::string text;
  RowOrigin origin;
  std::string line_origin;
  uint64_t line_number = 0;
  bool truncated = false;
};

inline std::string Key(const Row& r) {
  return std::to_string(r.origin.partition) + "@" + std::to_string(r.origin.offset) + "#" +
         std::to_string(r.origin.index) + ":" + r.text;
}

// Reads up to `limit` rows (all, for a bounded source) and, if `positions`,
// advances it past each row.
inline std::vector<Row> Read(LineSource& source, size_t limit = SIZE_MAX,
                             PartitionPositions* positions = nullptr) {
  std::vector<Row> out;
  Line line;
  while (out.size() < limit) {
    StatusOr<bool> more = source.Next(&line);
    EXPECT_TRUE(more.ok()) << more.status();
    if (!more.ok() || !*more) break;
    out.push_back({std::string(line.text), line.row_origin, std::string(line.origin),
                   line.line_number, line.truncated});
    if (positions != nullptr) positions->Advance(line.row_origin);
  }
  return out;
}

class KafkaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bootstrap_ = Bootstrap();
    if (bootstrap_.empty()) {
      FAIL() << "KAFKA_BOOTSTRAP is not set. These tests need a real broker: run\n"
                "  eval \"$(scripts/kafka.sh start)\"; export KAFKA_BOOTSTRAP\n"
                "or leave them out with `ctest -LE kafka`.";
    }
  }

  // A URI of a fresh topic with `partitions` partitions; `query` is appended.
  KafkaUri NewTopic(const std::string& what, int32_t partitions, const std::string& query = "") {
    const std::string text = "kafka://" + bootstrap_ + "/" + UniqueTopic(what) + query;
    StatusOr<KafkaUri> uri = ParseKafkaUri(text);
    CHECK(uri.ok()) << uri.status();
    Status s = CreateKafkaTopic(*uri, partitions, kTimeout);
    CHECK(s.ok()) << s;
    return *uri;
  }

  std::unique_ptr<KafkaProducer> Producer(const KafkaUri& uri) {
    StatusOr<std::unique_ptr<KafkaProducer>> p = KafkaProducer::Open(uri, kTimeout);
    CHECK(p.ok()) << p.status();
    return std::move(p).value();
  }

  std::unique_ptr<KafkaSource> Source(KafkaUri uri, std::vector<int32_t> partitions,
                                      std::map<int32_t, PartitionPositions::Entry> resume = {},
                                      SourceOptions source = {}) {
    KafkaSourceOptions options;
    options.uri = std::move(uri);
    options.partitions = std::move(partitions);
    options.resume = std::move(resume);
    options.broker_timeout = kTimeout;
    options.source = source;
    StatusOr<std::unique_ptr<KafkaSource>> s = KafkaSource::Open(std::move(options));
    CHECK(s.ok()) << s.status();
    return std::move(s).value();
  }

  static KafkaUri Bounded(KafkaUri uri) {
    uri.bounded = true;
    return uri;
  }

  std::string bootstrap_;
};

}  // namespace eddy::worker::kafka_testing

#endif  // EDDY_TESTS_WORKER_DATA_KAFKA_TEST_UTIL_H_
