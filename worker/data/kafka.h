// Kafka input: a topic as a LineSource, plus the few admin and producer helpers
// that jobs, tools and tests need. A worker reads the partitions dealt to it by
// the job (rd_kafka_assign, no consumer-group rebalancing) and tracks positions
// itself (RowOrigin / PartitionPositions), so a resume never relies on committed
// offsets. Rows come out in a deterministic merge order (see KafkaSource).
// URI: kafka://host:port[,host:port...]/topic[?group=G&start=earliest|latest|<unix ms>
//      &end=never|latest&rows=one|lines&rdkafka.<property>=<value>...]
// Thread-safety: KafkaUri is a plain value; the free functions are thread-safe
// (each uses a short-lived librdkafka handle of its own). KafkaSource: Next() is
// called by one thread at a time (the owner); RequestStop() and the counters
// (messages(), rows(), broker_errors(), HighWatermarks()) may be called from any
// thread. KafkaProducer: one thread at a time.
#ifndef EDDY_WORKER_DATA_KAFKA_H_
#define EDDY_WORKER_DATA_KAFKA_H_

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "worker/data/source.h"
#include "worker/data/stream_position.h"

namespace eddy::worker {

struct KafkaUri {
  enum class Start { kEarliest, kLatest, kTimestamp };

  std::string brokers;  // "host:port[,host:port...]" (librdkafka's bootstrap.servers)
  std::string topic;
  std::string group = "eddy";  // consumer group for committed offsets (never joined)
  Start start = Start::kEarliest;
  int64_t start_timestamp_ms = 0;  // Start::kTimestamp: first message with a timestamp >= this
  // end=latest: stop at each partition's end as seen when the source opens.
  bool bounded = false;
  // rows=lines: a message holds several rows separated by '\n' (a trailing '\n'
  // allowed); rows=one (default): a message is one row (a trailing '\n' ignored).
  bool several_rows_per_message = false;
  // rdkafka.<property>=<value> pairs, in URI order; applied to every librdkafka
  // handle after Eddy's tuning defaults and before the properties Eddy relies on.
  std::vector<std::pair<std::string, std::string>> config;

  // The canonical URI, every parameter spelled out; ParseKafkaUri() of it gives
  // an equal KafkaUri.
  std::string ToString() const;
};

// True if `data` starts with "kafka://".
bool IsKafkaUri(std::string_view data);
// Parses the URI above. Values are taken literally (no percent-decoding).
// Errors: InvalidArgument saying what is expected.
StatusOr<KafkaUri> ParseKafkaUri(std::string_view uri);

struct KafkaSourceOptions {
  KafkaUri uri;
  // The partitions this worker reads (dealt by the job). Duplicates are an error.
  std::vector<int32_t> partitions;
  // Partitions with a recorded position: reading seeks to entry.offset and skips
  // the first entry.rows_into_message rows of that message. Other partitions
  // start at uri.start.
  std::map<int32_t, PartitionPositions::Entry> resume;
  // Longest time to wait for a broker at Open() and, while reading, the longest
  // time without any reachable broker (or without the data a partition's high
  // watermark promises) before Next() returns Unavailable.
  std::chrono::milliseconds broker_timeout{60000};
  SourceOptions source;  // max_line_bytes applies to each row
};

namespace internal {
class KafkaSourceState;
class KafkaProducerState;
}  // namespace internal

// Rows of the assigned partitions of a topic.
//
// Order: deterministic, a function of the partitions' contents and start
// positions only. Among the partitions whose next message is already fetched,
// the message with the smallest (Kafka timestamp, partition) goes first, and all
// rows of a message are yielded consecutively. A partition with nothing fetched
// is waited for while its position is below its high watermark (the last one the
// broker reported); it is passed over only when it is caught up. Bounded
// (end=latest): each partition ends at its high watermark taken at Open(), and
// Next() returns false once every partition reached its end. Unbounded: Next()
// waits for new messages until RequestStop().
//
// Each Line: text = the row, origin = "topic/partition", line_number = offset + 1,
// row_origin = {partition, index in message, offset, timestamp, high watermark,
// last_in_message}. An empty message is one empty row. Rows longer than
// source.max_line_bytes are truncated (Line::truncated) as in the other sources.
//
// Broker trouble: librdkafka reconnects by itself; positions are tracked here,
// so nothing is lost or repeated across broker restarts. Next() returns
// Unavailable only when no broker has been reachable for longer than
// broker_timeout, or a partition stays below its high watermark without data for
// that long. Transient errors are logged (throttled) and counted.
class KafkaSource final : public LineSource {
 public:
  // Connects, checks the topic and partitions, resolves start offsets and
  // assigns the partitions. Errors: InvalidArgument (bad options, an rdkafka.*
  // property librdkafka rejects, a partition the topic does not have), NotFound
  // (no such topic), Unavailable (no broker reachable within broker_timeout).
  static StatusOr<std::unique_ptr<KafkaSource>> Open(KafkaSourceOptions options);
  ~KafkaSource() override;
  KafkaSource(const KafkaSource&) = delete;
  KafkaSource& operator=(const KafkaSource&) = delete;

  StatusOr<bool> Next(Line* line) override;
  void RequestStop() override;

  uint64_t messages() const;       // messages consumed (rows of them yielded or skipped)
  uint64_t rows() const;           // rows yielded
  uint64_t broker_errors() const;  // transient broker / transport errors seen
  // Where each assigned partition starts (resolved at Open(): the resumed
  // position, or the offset uri.start means), with its high watermark then. A
  // version cut before a partition yields anything still records it here.
  std::map<int32_t, PartitionPositions::Entry> StartPositions() const;
  // Each assigned partition's high watermark as last reported (-1: unknown).
  std::map<int32_t, int64_t> HighWatermarks() const;

 private:
  explicit KafkaSource(std::unique_ptr<internal::KafkaSourceState> state);
  std::unique_ptr<internal::KafkaSourceState> state_;
};

// Admin helpers. Each opens a short-lived librdkafka handle; errors name the
// brokers. Unavailable: no broker reachable within `timeout`; NotFound: no such
// topic (CreateKafkaTopic aside).
StatusOr<int32_t> KafkaPartitionCount(const KafkaUri& uri, std::chrono::milliseconds timeout);
// Creates uri.topic with `partitions` partitions (broker's default replication)
// and waits until every partition has a leader. An existing topic is fine if it
// has that many partitions (else AlreadyExists).
Status CreateKafkaTopic(const KafkaUri& uri, int32_t partitions, std::chrono::milliseconds timeout);
// Commits `next_offsets` (partition -> next offset to read) for uri.topic to
// consumer group uri.group, synchronously, without joining the group.
Status CommitKafkaOffsets(const KafkaUri& uri, const std::map<int32_t, int64_t>& next_offsets,
                          std::chrono::milliseconds timeout);
// The offsets committed by uri.group for uri.topic; partitions without a
// committed offset are left out.
StatusOr<std::map<int32_t, int64_t>> KafkaCommittedOffsets(const KafkaUri& uri,
                                                           std::chrono::milliseconds timeout);
// Every partition's (low, high) watermarks.
StatusOr<std::map<int32_t, std::pair<int64_t, int64_t>>> KafkaWatermarks(
    const KafkaUri& uri, std::chrono::milliseconds timeout);

// An idempotent producer (enable.idempotence=true, acks=all) for uri.topic: a
// broker restart cannot duplicate or reorder messages of a partition.
class KafkaProducer {
 public:
  // Errors: as KafkaPartitionCount (the topic must exist).
  static StatusOr<std::unique_ptr<KafkaProducer>> Open(const KafkaUri& uri,
                                                       std::chrono::milliseconds timeout);
  ~KafkaProducer();  // waits up to 10 s for queued messages
  KafkaProducer(const KafkaProducer&) = delete;
  KafkaProducer& operator=(const KafkaProducer&) = delete;

  // Queues one message. partition -1: round robin over the topic's partitions by
  // send count. timestamp_ms 0: now. Waits (serving delivery reports) while the
  // local queue is full. Errors: a delivery failure seen so far (Unavailable),
  // InvalidArgument for a partition out of range.
  Status Send(int32_t partition, std::string_view value, int64_t timestamp_ms = 0);
  // Waits until every queued message is delivered. Errors: DeadlineExceeded, or
  // the first delivery failure.
  Status Flush(std::chrono::milliseconds timeout);

  int32_t partitions() const;
  uint64_t sent() const;       // messages queued by Send
  uint64_t delivered() const;  // delivery reports without error

 private:
  explicit KafkaProducer(std::unique_ptr<internal::KafkaProducerState> state);
  std::unique_ptr<internal::KafkaProducerState> state_;
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_DATA_KAFKA_H_
