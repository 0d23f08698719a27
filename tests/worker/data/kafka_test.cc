// KafkaSource, the admin helpers and KafkaProducer against a real broker:
//   eval "$(scripts/kafka.sh start)"; export KAFKA_BOOTSTRAP
//   ctest -L kafka          (ctest -LE kafka leaves these tests out)
// Every test creates topics of its own, so the tests may run concurrently; the
// broker-restart test is RUN_SERIAL (it takes the broker away from the others).
#include "worker/data/kafka.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <future>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "tests/worker/data/kafka_test_util.h"

namespace eddy::worker {
namespace {

using namespace kafka_testing;  // NOLINT

// ---------------------------------------------------------------------------
// URIs (no broker needed).

TEST(KafkaUriTest, ParsesDefaultsAndEveryParameter) {
  EXPECT_TRUE(IsKafkaUri("kafka://h:1/t"));
  EXPECT_FALSE(IsKafkaUri("/data/x.tsv"));
  EXPECT_FALSE(IsKafkaUri("kafka:/h:1/t"));

  StatusOr<KafkaUri> a = ParseKafkaUri("kafka://127.0.0.1:9092/clicks");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->brokers, "127.0.0.1:9092");
  EXPECT_EQ(a->topic, "clicks");
  EXPECT_EQ(a->group, "eddy");
  EXPECT_EQ(a->start, KafkaUri::Start::kEarliest);
  EXPECT_FALSE(a->bounded);
  EXPECT_FALSE(a->several_rows_per_message);
  EXPECT_TRUE(a->config.empty());

  StatusOr<KafkaUri> b = ParseKafkaUri(
      "kafka://k1:9092,k2:9093/my.Topic_1-x?group=g1&start=1700000000123&end=latest&rows=lines"
      "&rdkafka.fetch.wait.max.ms=10&rdkafka.client.id=eddy");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->brokers, "k1:9092,k2:9093");
  EXPECT_EQ(b->topic, "my.Topic_1-x");
  EXPECT_EQ(b->group, "g1");
  EXPECT_EQ(b->start, KafkaUri::Start::kTimestamp);
  EXPECT_EQ(b->start_timestamp_ms, 1700000000123);
  EXPECT_TRUE(b->bounded);
  EXPECT_TRUE(b->several_rows_per_message);
  ASSERT_EQ(b->config.size(), 2u);
  EXPECT_EQ(b->config[0], (std::pair<std::string, std::string>("fetch.wait.max.ms", "10")));
  EXPECT_EQ(b->config[1], (std::pair<std::string, std::string>("client.id", "eddy")));

  StatusOr<KafkaUri> c = ParseKafkaUri("kafka://h:1/t?start=latest&end=never&rows=one");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->start, KafkaUri::Start::kLatest);

  // ToString round-trips.
  for (const KafkaUri* u : {&*a, &*b, &*c}) {
    StatusOr<KafkaUri> again = ParseKafkaUri(u->ToString());
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->ToString(), u->ToString());
    EXPECT_EQ(again->brokers, u->brokers);
    EXPECT_EQ(again->topic, u->topic);
    EXPECT_EQ(again->config, u->config);
  }
}

TEST(KafkaUriTest, RejectsBadUrisSayingWhatIsExpected) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"http://h:1/t", "expected kafka://host:port"},
      {"kafka://h:1", "names no topic"},
      {"kafka:///t", "no broker given"},
      {"kafka://h/t", "expected host:port"},
      {"kafka://h:0/t", "port number in 1..65535"},
      {"kafka://h:1,/t", "expected host:port"},
      {"kafka://h:x/t", "port number"},
      {"kafka://h:1/", "bad topic name"},
      {"kafka://h:1/a b", "[a-zA-Z0-9._-]"},
      {"kafka://h:1/..", "bad topic name"},
      {"kafka://h:1/" + std::string(250, 'a'), "1..249"},
      {"kafka://h:1/t?start=yesterday", "start=earliest, start=latest or start=<unix time in ms>"},
      {"kafka://h:1/t?start=-5", "start=<unix time in ms>"},
      {"kafka://h:1/t?end=soon", "end=never or end=latest"},
      {"kafka://h:1/t?rows=many", "rows=one"},
      {"kafka://h:1/t?group=", "group=<consumer group name>"},
      {"kafka://h:1/t?colour=red", "one of group=, start=, end=, rows=, rdkafka.<property>="},
      {"kafka://h:1/t?rows", "name=value"},
      {"kafka://h:1/t?rows=one&rows=lines", "given twice"},
      {"kafka://h:1/t?rdkafka.=1", "one of group="},
  };
  for (const auto& [uri, expected] : cases) {
    StatusOr<KafkaUri> parsed = ParseKafkaUri(uri);
    ASSERT_FALSE(parsed.ok()) << uri;
    EXPECT_EQ(parsed.status().code(), StatusCode::kInvalidArgument) << uri;
    EXPECT_NE(parsed.status().message().find(expected), std::string::npos)
        << uri << " -> " << parsed.status();
  }
}

// ---------------------------------------------------------------------------
// Reading.

// Rows 0..n-1, row i to partition i % 4 with timestamp base + i / 8: ties across
// partitions, so the merge order is (timestamp, partition, offset).
TEST_F(KafkaTest, BoundedReadYieldsEveryRowOnceInMergeOrder) {
  const KafkaUri uri = NewTopic("bounded", 4);
  constexpr int kRows = 2000;
  const int64_t base = 1'700'000'000'000;
  {
    auto producer = Producer(uri);
    for (int i = 0; i < kRows; ++i) {
      ASSERT_TRUE(producer->Send(i % 4, "row" + std::to_string(i), base + i / 8).ok());
    }
    ASSERT_TRUE(producer->Flush(kTimeout).ok());
  }
  auto source = Source(Bounded(uri), {0, 1, 2, 3});
  const std::vector<Row> rows = Read(*source);
  ASSERT_EQ(rows.size(), static_cast<size_t>(kRows));
  EXPECT_EQ(source->rows(), static_cast<uint64_t>(kRows));
  EXPECT_EQ(source->messages(), static_cast<uint64_t>(kRows));

  std::vector<std::tuple<int64_t, int32_t, int64_t>> keys;
  std::set<std::string> seen;
  for (const Row& r : rows) {
    ASSERT_EQ(r.text.substr(0, 3), "row");
    const int i = std::stoi(r.text.substr(3));
    EXPECT_TRUE(seen.insert(r.text).second) << "twice: " << r.text;
    EXPECT_EQ(r.origin.partition, i % 4);
    EXPECT_EQ(r.origin.offset, i / 4);
    EXPECT_EQ(r.origin.index, 0u);
    EXPECT_TRUE(r.origin.last_in_message);
    EXPECT_EQ(r.origin.timestamp_ms, base + i / 8);
    EXPECT_GE(r.origin.high_watermark, r.origin.offset + 1);
    EXPECT_LE(r.origin.high_watermark, kRows / 4);
    EXPECT_EQ(r.line_number, static_cast<uint64_t>(r.origin.offset) + 1);
    EXPECT_EQ(r.line_origin, uri.topic + "/" + std::to_string(i % 4));
    EXPECT_FALSE(r.truncated);
    keys.emplace_back(r.origin.timestamp_ms, r.origin.partition, r.origin.offset);
  }
  EXPECT_TRUE(std::is_sorted(keys.begin(), keys.end()));
  const std::map<int32_t, int64_t> hwm = source->HighWatermarks();
  EXPECT_EQ(hwm, (std::map<int32_t, int64_t>{{0, 500}, {1, 500}, {2, 500}, {3, 500}}));

  // Only some partitions: only their rows.
  auto two = Source(Bounded(uri), {3, 1});
  const std::vector<Row> some = Read(*two);
  ASSERT_EQ(some.size(), static_cast<size_t>(kRows / 2));
  for (const Row& r : some) EXPECT_TRUE(r.origin.partition == 1 || r.origin.partition == 3);
  // The order does not depend on the order partitions are listed in.
  auto sorted = Source(Bounded(uri), {1, 3});
  const std::vector<Row> same = Read(*sorted);
  ASSERT_EQ(same.size(), some.size());
  for (size_t i = 0; i < same.size(); ++i) EXPECT_EQ(Key(same[i]), Key(some[i])) << i;
}

// Messages of 1..5 rows (rows=lines) with timestamps out of order within a
// partition: two reads give the same order, and a read resumed from positions
// taken mid-message continues with exactly the uninterrupted tail.
class KafkaResumeTest : public KafkaTest, public ::testing::WithParamInterface<bool> {};

TEST_P(KafkaResumeTest, OrderIsDeterministicAndResumeContinuesTheTail) {
  const bool lines = GetParam();
  const KafkaUri uri = NewTopic("resume", 4, lines ? "?rows=lines" : "");
  constexpr int kMessages = 600;
  const int64_t base = 1'700'000'000'000;
  int row = 0;
  {
    auto producer = Producer(uri);
    uint32_t rng = 12345;
    for (int m = 0; m < kMessages; ++m) {
      rng = rng * 1103515245 + 12345;
      const int n = lines ? 1 + static_cast<int>((rng >> 16) % 5) : 1;
      std::string value;
      for (int k = 0; k < n; ++k) value += "r" + std::to_string(row++) + (k + 1 < n ? "\n" : "");
      if (lines && m % 3 == 0) value += "\n";  // a trailing '\n' is allowed
      ASSERT_TRUE(producer->Send(-1, value, base + static_cast<int64_t>((rng >> 8) % 50)).ok());
    }
    ASSERT_TRUE(producer->Flush(kTimeout).ok());
  }
  const std::vector<int32_t> all = {0, 1, 2, 3};
  auto first = Source(Bounded(uri), all);
  const std::vector<Row> a = Read(*first);
  ASSERT_EQ(a.size(), static_cast<size_t>(row));
  auto second = Source(Bounded(uri), all);
  const std::vector<Row> b = Read(*second);
  ASSERT_EQ(b.size(), a.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(Key(a[i]), Key(b[i])) << "row " << i;

  // Every row once; per partition in offset order; index/last consistent.
  std::set<std::string> texts;
  std::map<int32_t, std::pair<int64_t, uint32_t>> last;  // partition -> (offset, index)
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(texts.insert(a[i].text).second);
    const RowOrigin& o = a[i].origin;
    auto it = last.find(o.partition);
    if (it != last.end()) {
      const auto [offset, index] = it->second;
      if (o.offset == offset) {
        EXPECT_EQ(o.index, index + 1);
        EXPECT_FALSE(a[i - 1].origin.last_in_message);
      } else {
        EXPECT_GT(o.offset, offset);
        EXPECT_EQ(o.index, 0u);
      }
    }
    if (i > 0 && !a[i - 1].origin.last_in_message) {
      EXPECT_EQ(a[i - 1].origin.partition, o.partition) << "rows of a message are consecutive";
    }
    last[o.partition] = {o.offset, o.index};
  }

  // Cut points: mid-message where there is one, and a few others.
  std::vector<size_t> cuts = {1, a.size() / 3, a.size() - 1};
  for (size_t i = a.size() / 2; i < a.size(); ++i) {
    if (!a[i - 1].origin.last_in_message) {
      cuts.push_back(i);
      break;
    }
  }
  if (lines) {
    ASSERT_EQ(cuts.size(), 4u) << "no mid-message cut found";
  }
  for (size_t cut : cuts) {
    PartitionPositions positions;
    auto head_source = Source(Bounded(uri), all);
    const std::vector<Row> head = Read(*head_source, cut, &positions);
    ASSERT_EQ(head.size(), cut);
    auto tail_source = Source(Bounded(uri), all, positions.entries());
    const std::vector<Row> tail = Read(*tail_source);
    ASSERT_EQ(head.size() + tail.size(), a.size()) << "cut " << cut;
    for (size_t i = 0; i < tail.size(); ++i) {
      ASSERT_EQ(Key(tail[i]), Key(a[cut + i])) << "cut " << cut << " row " << i;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, KafkaResumeTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("Lines") : std::string("One");
                         });

TEST_F(KafkaTest, EmptyAndOverlongMessages) {
  KafkaUri uri = NewTopic("odd", 1, "?end=latest");
  {
    auto producer = Producer(uri);
    ASSERT_TRUE(producer->Send(0, "").ok());
    ASSERT_TRUE(producer->Send(0, std::string(40, 'x')).ok());
    ASSERT_TRUE(producer->Send(0, "ok\n").ok());
    ASSERT_TRUE(producer->Flush(kTimeout).ok());
  }
  SourceOptions small;
  small.max_line_bytes = 16;
  auto source = Source(uri, {0}, {}, small);
  const std::vector<Row> rows = Read(*source);
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0].text, "");
  EXPECT_FALSE(rows[0].truncated);
  EXPECT_EQ(rows[1].text, std::string(17, 'x'));
  EXPECT_TRUE(rows[1].truncated);
  EXPECT_EQ(rows[2].text, "ok");
  EXPECT_GT(rows[2].origin.timestamp_ms, 0);  // "now" when not given

  // rows=lines: an empty message is one empty row too.
  uri.several_rows_per_message = true;
  auto lines = Source(uri, {0}, {}, small);
  const std::vector<Row> again = Read(*lines);
  ASSERT_EQ(again.size(), 3u);
  EXPECT_EQ(again[0].text, "");
  EXPECT_TRUE(again[0].origin.last_in_message);
}

TEST_F(KafkaTest, StartLatestAndStartAtTimestamp) {
  const KafkaUri uri = NewTopic("start", 2);
  const int64_t base = 1'700'000'000'000;
  auto producer = Producer(uri);
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(producer->Send(i % 2, "old" + std::to_string(i), base + i).ok());
  }
  ASSERT_TRUE(producer->Flush(kTimeout).ok());

  // start=<ms>: the first message with a timestamp >= ms in each partition.
  KafkaUri at = Bounded(uri);
  at.start = KafkaUri::Start::kTimestamp;
  at.start_timestamp_ms = base + 13;
  auto from_ts = Source(at, {0, 1});
  std::vector<std::string> texts;
  for (const Row& r : Read(*from_ts)) texts.push_back(r.text);
  EXPECT_EQ(texts, (std::vector<std::string>{"old13", "old14", "old15", "old16", "old17", "old18",
                                             "old19"}));
  at.start_timestamp_ms = base + 1000;  // after every message: nothing
  auto none = Source(at, {0, 1});
  EXPECT_TRUE(Read(*none).empty());

  // start=latest, bounded: nothing; unbounded: only what is produced later.
  KafkaUri latest = uri;
  latest.start = KafkaUri::Start::kLatest;
  auto empty = Source(Bounded(latest), {0, 1});
  EXPECT_TRUE(Read(*empty).empty());
  auto live = Source(latest, {0, 1});
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(producer->Send(i % 2, "new" + std::to_string(i), base + 100 + i).ok());
  }
  ASSERT_TRUE(producer->Flush(kTimeout).ok());
  std::multiset<std::string> fresh;
  for (const Row& r : Read(*live, 4)) fresh.insert(r.text);
  EXPECT_EQ(fresh, (std::multiset<std::string>{"new0", "new1", "new2", "new3"}));
}

TEST_F(KafkaTest, UnreachableBrokerIsUnavailableWithinTheTimeout) {
  const std::string address = "127.0.0.1:" + std::to_string(ClosedPort());
  KafkaSourceOptions options;
  options.uri = *ParseKafkaUri("kafka://" + address + "/nothing");
  options.partitions = {0};
  options.broker_timeout = milliseconds(2000);
  const Clock::time_point start = Clock::now();
  StatusOr<std::unique_ptr<KafkaSource>> source = KafkaSource::Open(options);
  const auto took = Clock::now() - start;
  ASSERT_FALSE(source.ok());
  EXPECT_EQ(source.status().code(), StatusCode::kUnavailable) << source.status();
  EXPECT_NE(source.status().message().find("Kafka broker(s) " + address + " unreachable for"),
            std::string::npos)
      << source.status();
  EXPECT_NE(source.status().message().find("is --data right?"), std::string::npos);
  EXPECT_GE(took, milliseconds(1900));
  EXPECT_LT(took, milliseconds(6000));

  StatusOr<int32_t> count = KafkaPartitionCount(options.uri, milliseconds(1000));
  EXPECT_EQ(count.status().code(), StatusCode::kUnavailable) << count.status();
  EXPECT_NE(count.status().message().find(address), std::string::npos);
  EXPECT_EQ(KafkaProducer::Open(options.uri, milliseconds(1000)).status().code(),
            StatusCode::kUnavailable);
}

TEST_F(KafkaTest, MissingTopicAndMissingPartition) {
  KafkaUri missing = *ParseKafkaUri("kafka://" + bootstrap_ + "/" + UniqueTopic("missing"));
  KafkaSourceOptions options;
  options.uri = missing;
  options.partitions = {0};
  options.broker_timeout = kTimeout;
  StatusOr<std::unique_ptr<KafkaSource>> source = KafkaSource::Open(options);
  EXPECT_EQ(source.status().code(), StatusCode::kNotFound) << source.status();
  EXPECT_NE(source.status().message().find(missing.topic), std::string::npos);
  EXPECT_EQ(KafkaPartitionCount(missing, kTimeout).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(KafkaProducer::Open(missing, kTimeout).status().code(), StatusCode::kNotFound);

  const KafkaUri uri = NewTopic("parts", 3);
  StatusOr<int32_t> count = KafkaPartitionCount(uri, kTimeout);
  ASSERT_TRUE(count.ok()) << count.status();
  EXPECT_EQ(*count, 3);
  options.uri = uri;
  options.partitions = {0, 3};
  source = KafkaSource::Open(options);
  EXPECT_EQ(source.status().code(), StatusCode::kInvalidArgument) << source.status();
  EXPECT_NE(source.status().message().find("partition 3"), std::string::npos) << source.status();

  // Creating it again: fine with the same count, an error with another.
  EXPECT_TRUE(CreateKafkaTopic(uri, 3, kTimeout).ok());
  Status other = CreateKafkaTopic(uri, 5, kTimeout);
  EXPECT_EQ(other.code(), StatusCode::kAlreadyExists) << other;

  // A property librdkafka does not know.
  KafkaUri bad = uri;
  bad.config.emplace_back("no.such.property", "1");
  options.uri = bad;
  options.partitions = {0};
  source = KafkaSource::Open(options);
  EXPECT_EQ(source.status().code(), StatusCode::kInvalidArgument) << source.status();
  EXPECT_NE(source.status().message().find("rdkafka.no.such.property"), std::string::npos);
}

TEST_F(KafkaTest, WatermarksAndCommittedOffsetsRoundTrip) {
  KafkaUri uri = NewTopic("commit", 3);
  uri.group = "eddy-test-" + uri.topic;
  {
    auto producer = Producer(uri);
    for (int i = 0; i < 30; ++i) ASSERT_TRUE(producer->Send(-1, "x" + std::to_string(i)).ok());
    ASSERT_TRUE(producer->Flush(kTimeout).ok());
    EXPECT_EQ(producer->delivered(), 30u);
  }
  StatusOr<std::map<int32_t, std::pair<int64_t, int64_t>>> marks = KafkaWatermarks(uri, kTimeout);
  ASSERT_TRUE(marks.ok()) << marks.status();
  EXPECT_EQ(*marks, (std::map<int32_t, std::pair<int64_t, int64_t>>{
                        {0, {0, 10}}, {1, {0, 10}}, {2, {0, 10}}}));

  StatusOr<std::map<int32_t, int64_t>> none = KafkaCommittedOffsets(uri, kTimeout);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_TRUE(none->empty());
  ASSERT_TRUE(CommitKafkaOffsets(uri, {{0, 4}, {2, 10}}, kTimeout).ok());
  StatusOr<std::map<int32_t, int64_t>> committed = KafkaCommittedOffsets(uri, kTimeout);
  ASSERT_TRUE(committed.ok()) << committed.status();
  EXPECT_EQ(*committed, (std::map<int32_t, int64_t>{{0, 4}, {2, 10}}));
  ASSERT_TRUE(CommitKafkaOffsets(uri, {{0, 7}}, kTimeout).ok());
  committed = KafkaCommittedOffsets(uri, kTimeout);
  ASSERT_TRUE(committed.ok());
  EXPECT_EQ(*committed, (std::map<int32_t, int64_t>{{0, 7}, {2, 10}}));

  // Kafka's own tool sees them (kafka-consumer-groups --describe).
  const std::string out = ::testing::TempDir() + "/groups-" + uri.topic + ".txt";
  const std::string command = "java -cp \"$(" EDDY_SOURCE_DIR
                              "/scripts/kafka.sh classpath)\" "
                              "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand "
                              "--bootstrap-server " +
                              bootstrap_ + " --describe --group " + uri.group + " > " + out +
                              " 2>&1";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;
  std::ifstream in(out);
  std::map<int32_t, int64_t> described;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string group, topic, partition, current;
    if (fields >> group >> topic >> partition >> current && topic == uri.topic) {
      described[std::stoi(partition)] = std::stoll(current);
    }
  }
  std::remove(out.c_str());
  EXPECT_EQ(described, (std::map<int32_t, int64_t>{{0, 7}, {2, 10}}));
}

TEST_F(KafkaTest, RequestStopWakesAWaitingNext) {
  const KafkaUri uri = NewTopic("stop", 2);
  {
    auto producer = Producer(uri);
    ASSERT_TRUE(producer->Send(1, "only").ok());
    ASSERT_TRUE(producer->Flush(kTimeout).ok());
  }
  auto source = Source(uri, {0, 1});
  ASSERT_EQ(Read(*source, 1).size(), 1u);
  std::future<StatusOr<bool>> next = std::async(std::launch::async, [&] {
    Line line;
    return source->Next(&line);
  });
  // Caught up and unbounded: Next() waits...
  EXPECT_EQ(next.wait_for(milliseconds(300)), std::future_status::timeout);
  const Clock::time_point stop = Clock::now();
  source->RequestStop();
  // ...until RequestStop(), promptly.
  ASSERT_EQ(next.wait_for(milliseconds(2000)), std::future_status::ready);
  EXPECT_LT(Clock::now() - stop, milliseconds(500));
  StatusOr<bool> result = next.get();
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_FALSE(*result);
}

// eddy_gen --out=kafka://...: row i of the generated stream is message i / n
// (rows=lines, n rows a message), in partition (i / n) % P; the rows are those
// of the same stream written to a file.
TEST_F(KafkaTest, EddyGenProducesTheGeneratedRows) {
  const std::string file = ::testing::TempDir() + "/eddy_gen_kafka_" + std::to_string(getpid());
  const std::string gen = EDDY_BIN_DIR "/eddy_gen --rows=1000 --seed=7 --max_vocab=1000";
  ASSERT_EQ(std::system((gen + " --out=" + file).c_str()), 0);
  std::vector<std::string> expected;
  {
    std::ifstream in(file);
    std::string line;
    while (std::getline(in, line)) expected.push_back(line);
  }
  std::remove(file.c_str());
  ASSERT_EQ(expected.size(), 1000u);

  for (const int per_message : {1, 4}) {
    const std::string topic = UniqueTopic("gen");
    const std::string query = per_message > 1 ? "?rows=lines" : "";
    const std::string command =
        gen + " --out=kafka://" + bootstrap_ + "/" + topic + query +
        " --kafka_partitions=3 --rows_per_message=" + std::to_string(per_message);
    ASSERT_EQ(std::system(command.c_str()), 0) << command;
    KafkaUri uri = *ParseKafkaUri("kafka://" + bootstrap_ + "/" + topic + query);
    uri.bounded = true;
    auto source = Source(uri, {0, 1, 2});
    const std::vector<Row> rows = Read(*source);
    ASSERT_EQ(rows.size(), expected.size());
    std::map<std::pair<int32_t, int64_t>, std::vector<std::string>> messages;
    for (const Row& r : rows) messages[{r.origin.partition, r.origin.offset}].push_back(r.text);
    ASSERT_EQ(messages.size(), (expected.size() + per_message - 1) / per_message);
    for (size_t i = 0; i < expected.size(); ++i) {
      const int64_t m = static_cast<int64_t>(i) / per_message;
      const auto& message = messages[{static_cast<int32_t>(m % 3), m / 3}];
      ASSERT_EQ(message.at(i % per_message), expected[i]) << "row " << i;
    }
  }
}

TEST_F(KafkaTest, EddyGenErrors) {
  const std::string gen = EDDY_BIN_DIR "/eddy_gen --rows=10 ";
  const std::string missing = "kafka://" + bootstrap_ + "/" + UniqueTopic("nogen");
  EXPECT_NE(std::system((gen + "--out=" + missing + " 2>/dev/null").c_str()), 0);
  EXPECT_NE(std::system((gen + "--out=" + missing + " --rows_per_message=2 2>/dev/null").c_str()),
            0);
  EXPECT_NE(std::system((gen + "--out=kafka://" + bootstrap_ + "/bad%20topic 2>/dev/null").c_str()),
            0);
}

}  // namespace
}  // namespace eddy::worker
