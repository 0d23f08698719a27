#include "worker/data/internal/kafka_handle.h"
#include "worker/data/kafka.h"

namespace eddy::worker {

using namespace kafka_detail;  // NOLINT: this file's own internals

// ---------------------------------------------------------------------------
// KafkaSource.

namespace internal {

class KafkaSourceState {
 public:
  struct Partition {
    int32_t id = 0;
    std::string origin;  // "topic/partition"
    rd_kafka_queue_t* queue = nullptr;
    std::vector<rd_kafka_message_t*> buf;  // fetched, not yet taken: [head, tail)
    size_t head = 0;
    size_t tail = 0;
    int64_t pos = 0;                                    // next offset to yield
    int64_t end = std::numeric_limits<int64_t>::max();  // bounded: stop here
    int64_t hwm = -1;                                   // as last reported
    int64_t skip_offset = -1;  // resume: the message whose first rows are skipped
    uint32_t skip_rows = 0;
    int64_t head_ts = 0;    // timestamp of buf[head] (valid when not empty)
    bool finished = false;  // bounded: reached end
    bool empty() const { return head == tail; }
  };

  explicit KafkaSourceState(KafkaSourceOptions options) : options_(std::move(options)) {
    ctx_.brokers = options_.uri.brokers;
    ctx_.owner = this;
  }

  ~KafkaSourceState() {
    ReleaseCurrent();
    for (Partition& p : partitions_) {
      for (size_t i = p.head; i < p.tail; ++i) rd_kafka_message_destroy(p.buf[i]);
      if (p.queue != nullptr) {
        rd_kafka_queue_io_event_enable(p.queue, -1, nullptr, 0);
        rd_kafka_queue_destroy(p.queue);
      }
    }
    for (rd_kafka_queue_t* q : {main_queue_, consumer_queue_}) {
      if (q == nullptr) continue;
      rd_kafka_queue_io_event_enable(q, -1, nullptr, 0);
      rd_kafka_queue_destroy(q);
    }
    rk_.reset();  // before ctx_, which its callbacks use
  }

  Status Open();
  StatusOr<bool> Next(Line* line);
  void RequestStop() {
    stop_.store(true, std::memory_order_relaxed);
    waker_.Notify();
  }

  uint64_t messages() const { return messages_.load(std::memory_order_relaxed); }
  uint64_t rows() const { return rows_.load(std::memory_order_relaxed); }
  uint64_t broker_errors() const { return broker_errors_.load(std::memory_order_relaxed); }
  const std::map<int32_t, PartitionPositions::Entry>& start_positions() const {
    return start_positions_;
  }
  std::map<int32_t, int64_t> HighWatermarks() const {
    MutexLock lock(&hwm_mu_);
    return hwm_snapshot_;
  }

 private:
  static constexpr size_t kBatch = 4096;  // messages taken from a partition queue at once

  static void ErrorCallback(rd_kafka_t* rk, int err, const char* reason, void* opaque);
  static int StatsCallback(rd_kafka_t* rk, char* json, size_t json_len, void* opaque);

  const KafkaUri& uri() const { return options_.uri; }
  // Serves librdkafka's main and consumer queues (error and stats callbacks).
  void ServeEvents();
  void BrokerUp(Clock::time_point now);
  void BrokerDown(Clock::time_point now);
  // Takes what the partition's queue holds if its buffer is empty; settles its head.
  Status Fill(Partition& p);
  // Handles error entries (end of partition, consume errors) at the buffer's head.
  Status Settle(Partition& p);
  void RefreshHighWatermark(Partition& p);
  // Starts yielding `msg` of `p`; false if all its rows are skipped.
  bool Begin(Partition& p, rd_kafka_message_t* msg);
  // Fills *line with the current message's next row (counted in rows_ if `count`).
  void Yield(Line* line, bool count = true);
  // Counters written only by the Next() thread: no read-modify-write needed.
  static void Bump(std::atomic<uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  // Skips the current message's next row; false if there was none.
  bool SkipRow();
  void ReleaseCurrent();
  // Bounded: `p` reached its end; librdkafka stops fetching it.
  void Finish(Partition& p);
  Status Wait(bool blocked, const Partition* waiting_for);

  KafkaSourceOptions options_;
  HandleContext ctx_;
  HandlePtr rk_;
  rd_kafka_queue_t* main_queue_ = nullptr;
  rd_kafka_queue_t* consumer_queue_ = nullptr;
  std::vector<Partition> partitions_;
  Waker waker_;  // librdkafka's queues write to it when they become non-empty
  std::atomic<bool> stop_{false};

  // The message being yielded.
  rd_kafka_message_t* cur_ = nullptr;
  Partition* cur_part_ = nullptr;
  const char* cur_data_ = nullptr;
  size_t cur_len_ = 0;
  size_t cur_next_ = 0;  // byte offset of the next row
  uint32_t cur_index_ = 0;
  bool cur_done_ = true;
  int64_t cur_timestamp_ = 0;

  uint64_t rounds_ = 0;
  std::optional<Clock::time_point> down_since_;     // no broker up since then
  std::optional<Clock::time_point> blocked_since_;  // waiting for a partition with data due
  std::atomic<uint64_t> messages_{0};
  std::atomic<uint64_t> rows_{0};
  std::atomic<uint64_t> broker_errors_{0};
  std::map<int32_t, PartitionPositions::Entry> start_positions_;  // set by Open()
  mutable Mutex hwm_mu_;
  std::map<int32_t, int64_t> hwm_snapshot_ GUARDED_BY(hwm_mu_);
};

void KafkaSourceState::ErrorCallback(rd_kafka_t*, int err, const char* reason, void* opaque) {
  auto* self = static_cast<KafkaSourceState*>(static_cast<HandleContext*>(opaque)->owner);
  const auto code = static_cast<rd_kafka_resp_err_t>(err);
  self->broker_errors_.fetch_add(1, std::memory_order_relaxed);
  self->ctx_.NoteError(reason);
  if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) self->BrokerDown(Clock::now());
  self->ctx_.ThrottledLog(google::WARNING, std::string(ErrName(code)) + ": " + reason);
}

// The statistics JSON lists every broker with its "source" (configured,
// learned, internal...) and connection "state" ("UP" when connected). Any
// non-internal broker UP means a broker is reachable.
int KafkaSourceState::StatsCallback(rd_kafka_t*, char* json, size_t json_len, void* opaque) {
  auto* self = static_cast<KafkaSourceState*>(static_cast<HandleContext*>(opaque)->owner);
  const std::string_view s(json, json_len);
  size_t at = s.find("\"brokers\":");
  const size_t topics = s.find("\"topics\":");
  bool up = false;
  const auto value_at = [&](size_t key_end) {
    const size_t close = s.find('"', key_end);
    return close == std::string_view::npos ? std::string_view()
                                           : s.substr(key_end, close - key_end);
  };
  while (at != std::string_view::npos) {
    at = s.find("\"source\":\"", at);
    if (at == std::string_view::npos || (topics != std::string_view::npos && at > topics)) break;
    at += 10;
    const std::string_view source = value_at(at);
    const size_t state = s.find("\"state\":\"", at);
    if (state == std::string_view::npos) break;
    if (source != "internal" && value_at(state + 9) == "UP") up = true;
    at = state + 9;
  }
  if (up) {
    self->BrokerUp(Clock::now());
  } else {
    self->BrokerDown(Clock::now());
  }
  return 0;  // librdkafka frees json
}

void KafkaSourceState::BrokerUp(Clock::time_point) {
  if (down_since_) {
    LOG(INFO) << "kafka " << uri().brokers << ": broker reachable again after "
              << Seconds(std::chrono::duration_cast<milliseconds>(Clock::now() - *down_since_));
    down_since_.reset();
    blocked_since_.reset();  // the wait for data starts over
  }
}

void KafkaSourceState::BrokerDown(Clock::time_point now) {
  if (!down_since_) down_since_ = now;
}

Status KafkaSourceState::Open() {
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + options_.broker_timeout;
  if (options_.broker_timeout <= milliseconds(0)) {
    return InvalidArgumentError("KafkaSourceOptions.broker_timeout must be > 0");
  }
  std::set<int32_t> unique(options_.partitions.begin(), options_.partitions.end());
  if (unique.size() != options_.partitions.size()) {
    return InvalidArgumentError("KafkaSourceOptions.partitions lists a partition twice");
  }
  for (const auto& [p, entry] : options_.resume) {
    if (!unique.count(p)) {
      return InvalidArgumentError("resume position for partition " + std::to_string(p) +
                                  ", which is not assigned to this source");
    }
    if (entry.offset < 0) {
      return InvalidArgumentError("resume position for partition " + std::to_string(p) +
                                  " has a negative offset");
    }
  }
  // Tuning for throughput (a URI's rdkafka.* may override), then what the merge
  // and the position tracking rely on. Prefetch: once a partition's local queue
  // exceeds queued.min.messages or queued.max.messages.kbytes, librdkafka before
  // 2.1 stops fetching it for a whole second (2.1 made that fetch.queue.backoff.ms),
  // so with 2.0 each partition's queue must hold over a second of reading at
  // full speed (~2 M rows/s per worker): the totals below are split between the
  // partitions (at most ~512 MB of prefetched messages per source).
  const size_t n = std::max<size_t>(1, options_.partitions.size());
  const bool has_queue_backoff = rd_kafka_version() >= 0x020100ff;
  Properties defaults = {
      {"fetch.wait.max.ms", "100"},
      {"fetch.message.max.bytes", "4194304"},
      {"queued.min.messages", std::to_string(std::max<size_t>(20000, 2'000'000 / n))},
      {"queued.max.messages.kbytes", std::to_string(std::max<size_t>(16384, 524288 / n))},
  };
  if (has_queue_backoff) defaults.emplace_back("fetch.queue.backoff.ms", "20");
  const Properties required = {
      {"group.id", uri().group},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"enable.partition.eof", "true"},    // marks "caught up" even past control records
      {"auto.offset.reset", "error"},      // out-of-range positions are errors, never skipped
      {"statistics.interval.ms", "1000"},  // broker states, see StatsCallback
  };
  ASSIGN_OR_RETURN(ConfPtr conf, MakeConf(uri(), defaults, required, &ctx_));
  rd_kafka_conf_set_error_cb(conf.get(), &ErrorCallback);
  rd_kafka_conf_set_stats_cb(conf.get(), &StatsCallback);
  ASSIGN_OR_RETURN(rk_, NewHandle(RD_KAFKA_CONSUMER, std::move(conf)));

  ASSIGN_OR_RETURN(TopicInfo info,
                   DescribeTopic(rk_.get(), uri(), start, deadline, &ctx_, kDataHint));
  for (int32_t p : options_.partitions) {
    if (p < 0 || p >= info.partitions) {
      return InvalidArgumentError("partition " + std::to_string(p) + " of Kafka topic '" +
                                  uri().topic + "' does not exist (it has " +
                                  std::to_string(info.partitions) + " partitions)");
    }
  }

  // Watermarks: where "earliest" and "latest" are, and the bounded end.
  partitions_.resize(options_.partitions.size());
  for (size_t i = 0; i < partitions_.size(); ++i) {
    Partition& part = partitions_[i];
    part.id = options_.partitions[i];
    part.origin = uri().topic + "/" + std::to_string(part.id);
    part.buf.resize(kBatch);
    int64_t low = 0, high = 0;
    const rd_kafka_resp_err_t err = RetryTransient(
        [&](int timeout_ms) {
          return rd_kafka_query_watermark_offsets(rk_.get(), uri().topic.c_str(), part.id, &low,
                                                  &high, timeout_ms);
        },
        deadline);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      return BrokerError(uri(), "watermarks of " + part.origin, start, err, &ctx_, kDataHint);
    }
    part.hwm = high;
    if (uri().bounded) part.end = high;
    if (auto it = options_.resume.find(part.id); it != options_.resume.end()) {
      part.pos = it->second.offset;
      part.skip_offset = it->second.offset;
      part.skip_rows = it->second.rows_into_message;
    } else if (uri().start == KafkaUri::Start::kLatest) {
      part.pos = high;
    } else {
      part.pos = low;  // earliest; a timestamp start is resolved below
    }
  }
  if (uri().start == KafkaUri::Start::kTimestamp) {
    ListPtr list;
    // The list is both the query (timestamps) and the answer (offsets): a fresh one per try.
    const auto query = [&](int timeout_ms) {
      list.reset(rd_kafka_topic_partition_list_new(static_cast<int>(partitions_.size())));
      for (const Partition& part : partitions_) {
        if (options_.resume.count(part.id)) continue;
        rd_kafka_topic_partition_list_add(list.get(), uri().topic.c_str(), part.id)->offset =
            uri().start_timestamp_ms;
      }
      if (list->cnt == 0) return RD_KAFKA_RESP_ERR_NO_ERROR;
      return rd_kafka_offsets_for_times(rk_.get(), list.get(), timeout_ms);
    };
    if (const rd_kafka_resp_err_t err = RetryTransient(query, deadline); err) {
      return BrokerError(uri(),
                         "offsets for timestamp " + std::to_string(uri().start_timestamp_ms) +
                             " in '" + uri().topic + "'",
                         start, err, &ctx_, kDataHint);
    }
    {
      for (int i = 0; i < list->cnt; ++i) {
        const rd_kafka_topic_partition_t& tp = list->elems[i];
        if (tp.err != RD_KAFKA_RESP_ERR_NO_ERROR) {
          return UnavailableError("offset for timestamp " +
                                  std::to_string(uri().start_timestamp_ms) + " in " + uri().topic +
                                  "/" + std::to_string(tp.partition) + ": " + ErrName(tp.err));
        }
        for (Partition& part : partitions_) {
          if (part.id != tp.partition) continue;
          // -1: every message is older; start at the end.
          part.pos = tp.offset >= 0 ? tp.offset : part.hwm;
        }
      }
    }
  }
  {
    MutexLock lock(&hwm_mu_);
    for (const Partition& part : partitions_) hwm_snapshot_[part.id] = part.hwm;
  }
  for (const Partition& part : partitions_) {
    PartitionPositions::Entry& e = start_positions_[part.id];
    e.offset = part.pos;
    e.rows_into_message = part.skip_offset == part.pos ? part.skip_rows : 0;
    e.high_watermark = part.hwm;
    if (auto it = options_.resume.find(part.id); it != options_.resume.end()) {
      e.newest_timestamp_ms = it->second.newest_timestamp_ms;
    }
  }

  // One queue per partition, not forwarded to the consumer queue: the merge
  // below decides the order. Each queue (and the main and consumer queues, for
  // errors and statistics) writes to waker_'s eventfd when it becomes non-empty.
  static constexpr uint64_t kOne = 1;
  for (Partition& part : partitions_) {
    part.queue = rd_kafka_queue_get_partition(rk_.get(), uri().topic.c_str(), part.id);
    if (part.queue == nullptr) return InternalError("no queue for " + part.origin);
    rd_kafka_queue_forward(part.queue, nullptr);
    rd_kafka_queue_io_event_enable(part.queue, waker_.fd(), &kOne, sizeof(kOne));
  }
  main_queue_ = rd_kafka_queue_get_main(rk_.get());
  rd_kafka_queue_io_event_enable(main_queue_, waker_.fd(), &kOne, sizeof(kOne));
  consumer_queue_ = rd_kafka_queue_get_consumer(rk_.get());
  if (consumer_queue_ != nullptr) {
    rd_kafka_queue_io_event_enable(consumer_queue_, waker_.fd(), &kOne, sizeof(kOne));
  }

  ListPtr assignment(rd_kafka_topic_partition_list_new(static_cast<int>(partitions_.size())));
  for (const Partition& part : partitions_) {
    rd_kafka_topic_partition_list_add(assignment.get(), uri().topic.c_str(), part.id)->offset =
        part.pos;
  }
  if (const rd_kafka_resp_err_t err = rd_kafka_assign(rk_.get(), assignment.get()); err) {
    return InternalError("rd_kafka_assign(" + uri().topic + "): " + ErrName(err));
  }
  return OkStatus();
}

void KafkaSourceState::ServeEvents() {
  rd_kafka_poll(rk_.get(), 0);  // error and stats callbacks
  if (consumer_queue_ == nullptr) return;
  rd_kafka_message_t* msgs[16];
  for (;;) {
    const ssize_t n = rd_kafka_consume_batch_queue(consumer_queue_, 0, msgs, 16);
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      if (msgs[i]->err) {
        broker_errors_.fetch_add(1, std::memory_order_relaxed);
        ctx_.ThrottledLog(google::WARNING,
                          "consumer: " + std::string(rd_kafka_message_errstr(msgs[i])));
      }
      rd_kafka_message_destroy(msgs[i]);
    }
  }
}

void KafkaSourceState::RefreshHighWatermark(Partition& p) {
  int64_t low = 0, high = 0;
  if (rd_kafka_get_watermark_offsets(rk_.get(), uri().topic.c_str(), p.id, &low, &high) ==
          RD_KAFKA_RESP_ERR_NO_ERROR &&
      high > p.hwm) {
    p.hwm = high;
    MutexLock lock(&hwm_mu_);
    hwm_snapshot_[p.id] = high;
  }
}

Status KafkaSourceState::Fill(Partition& p) {
  if (!p.empty() || p.finished) return OkStatus();
  const ssize_t n = rd_kafka_consume_batch_queue(p.queue, 0, p.buf.data(), p.buf.size());
  if (n < 0) {
    return InternalError("consuming " + p.origin + ": " + ErrName(rd_kafka_last_error()));
  }
  p.head = 0;
  p.tail = static_cast<size_t>(n);
  RefreshHighWatermark(p);
  return Settle(p);
}

Status KafkaSourceState::Settle(Partition& p) {
  while (!p.empty() && p.buf[p.head]->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    rd_kafka_message_t* m = p.buf[p.head++];
    const rd_kafka_resp_err_t err = m->err;
    const int64_t offset = m->offset;
    const std::string what = rd_kafka_message_errstr(m);
    rd_kafka_message_destroy(m);
    switch (err) {
      case RD_KAFKA_RESP_ERR__PARTITION_EOF:
        // Every message below `offset` was queued before this mark: the
        // partition is caught up there (past any control records).
        p.pos = std::max(p.pos, offset);
        if (offset > p.hwm) {
          p.hwm = offset;
          MutexLock lock(&hwm_mu_);
          hwm_snapshot_[p.id] = offset;
        }
        break;
      case RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET:
      case RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE:
        return OutOfRangeError(
            "Kafka " + p.origin + ": offset " + std::to_string(p.pos) +
            " is out of range (deleted by retention, or beyond the end?): " + what);
      case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
        return NotFoundError("Kafka topic '" + uri().topic + "' no longer exists at " +
                             uri().brokers + ": " + what);
      case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
        return NotFoundError("Kafka " + p.origin + " no longer exists: " + what);
      case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
      case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
        return FailedPreconditionError("Kafka " + p.origin + ": " + what);
      default:
        broker_errors_.fetch_add(1, std::memory_order_relaxed);
        ctx_.NoteError(what);
        ctx_.ThrottledLog(google::WARNING, p.origin + ": " + what);
        break;
    }
  }
  if (p.empty()) {
    p.head = p.tail = 0;
  } else {
    rd_kafka_timestamp_type_t type;
    p.head_ts = rd_kafka_message_timestamp(p.buf[p.head], &type);
  }
  return OkStatus();
}

void KafkaSourceState::Finish(Partition& p) {
  p.finished = true;
  ListPtr list(rd_kafka_topic_partition_list_new(1));
  rd_kafka_topic_partition_list_add(list.get(), uri().topic.c_str(), p.id);
  rd_kafka_pause_partitions(rk_.get(), list.get());  // best effort: only saves fetching
}

void KafkaSourceState::ReleaseCurrent() {
  if (cur_ != nullptr) {
    rd_kafka_message_destroy(cur_);
    cur_ = nullptr;
  }
  cur_done_ = true;
}

bool KafkaSourceState::Begin(Partition& p, rd_kafka_message_t* msg) {
  cur_ = msg;
  cur_part_ = &p;
  cur_data_ = static_cast<const char*>(msg->payload);
  cur_len_ = msg->payload != nullptr ? msg->len : 0;
  cur_next_ = 0;
  cur_index_ = 0;
  cur_done_ = false;
  rd_kafka_timestamp_type_t type;
  const int64_t ts = rd_kafka_message_timestamp(msg, &type);
  cur_timestamp_ = ts > 0 ? ts : 0;
  p.pos = msg->offset + 1;
  Bump(messages_);
  if (p.skip_offset >= 0) {
    if (p.skip_offset == msg->offset) {
      uint32_t skipped = 0;
      while (skipped < p.skip_rows && SkipRow()) ++skipped;
      if (skipped < p.skip_rows) {
        LOG(WARNING) << "kafka " << p.origin << ": resume position says " << p.skip_rows
                     << " rows of offset " << msg->offset << " were read, but it has only "
                     << skipped << "; skipping the whole message";
      }
    }
    p.skip_offset = -1;
  }
  if (cur_done_) {
    ReleaseCurrent();
    return false;
  }
  return true;
}

bool KafkaSourceState::SkipRow() {
  if (cur_done_) return false;
  Line ignored;
  Yield(&ignored, /*count=*/false);
  return true;
}

void KafkaSourceState::Yield(Line* line, bool count) {
  std::string_view text;
  if (!uri().several_rows_per_message) {
    text = std::string_view(cur_data_, cur_len_);
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    cur_done_ = true;
  } else {
    const char* begin = cur_data_ + cur_next_;
    const size_t left = cur_len_ - cur_next_;
    const void* nl = left > 0 ? std::memchr(begin, '\n', left) : nullptr;
    const size_t size =
        nl != nullptr ? static_cast<size_t>(static_cast<const char*>(nl) - begin) : left;
    text = std::string_view(begin, size);
    cur_next_ += size + 1;
    cur_done_ = cur_next_ >= cur_len_;  // nothing, or only the trailing '\n', follows
  }
  const size_t max = options_.source.max_line_bytes;
  line->truncated = text.size() > max;
  if (line->truncated) text = text.substr(0, max + 1);
  line->text = text;
  line->origin = cur_part_->origin;
  line->line_number = static_cast<uint64_t>(cur_->offset) + 1;
  RowOrigin& o = line->row_origin;
  o.partition = cur_part_->id;
  o.index = cur_index_++;
  o.offset = cur_->offset;
  o.timestamp_ms = cur_timestamp_;
  o.high_watermark = cur_part_->hwm;
  o.last_in_message = cur_done_;
  if (count) Bump(rows_);
}

Status KafkaSourceState::Wait(bool blocked, const Partition* waiting_for) {
  const Clock::time_point now = Clock::now();
  const milliseconds timeout = options_.broker_timeout;
  if (down_since_ && now - *down_since_ > timeout) {
    return Unreachable(uri(), std::chrono::duration_cast<milliseconds>(now - *down_since_),
                       RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN, &ctx_, kDataHint);
  }
  Clock::time_point deadline = now + milliseconds(1000);  // re-check broker state each second
  if (blocked) {
    if (!blocked_since_) blocked_since_ = now;
    // (While no broker is up, the check above decides; the stall counts from
    // the broker's return, see BrokerUp.)
    if (!down_since_ && now - *blocked_since_ > timeout && waiting_for != nullptr) {
      return UnavailableError(
          "Kafka " + waiting_for->origin + " at " + uri().brokers + ": no message for " +
          Seconds(std::chrono::duration_cast<milliseconds>(now - *blocked_since_)) +
          " although its position " + std::to_string(waiting_for->pos) +
          " is below its high watermark " + std::to_string(waiting_for->hwm));
    }
    deadline = std::min(deadline, *blocked_since_ + timeout + milliseconds(1));
  } else {
    blocked_since_.reset();
  }
  if (down_since_) deadline = std::min(deadline, *down_since_ + timeout + milliseconds(1));
  waker_.WaitFor(milliseconds(std::max<long>(1, PollTimeoutMs(deadline, 1000))));
  return OkStatus();
}

StatusOr<bool> KafkaSourceState::Next(Line* line) {
  if (!cur_done_) {
    Yield(line);
    return true;
  }
  ReleaseCurrent();
  for (;;) {
    if (stop_.load(std::memory_order_relaxed)) return false;
    if ((++rounds_ & 1023) == 0) ServeEvents();
    Partition* best = nullptr;
    const Partition* waiting_for = nullptr;
    bool active = false;
    for (Partition& p : partitions_) {
      if (p.finished) continue;
      RETURN_IF_ERROR(Fill(p));
      if (p.empty()) {
        if (uri().bounded && p.pos >= p.end) {
          Finish(p);
          continue;
        }
        active = true;
        // Data is due: the merge must wait for it to keep the order deterministic.
        if (p.pos < (uri().bounded ? p.end : p.hwm) && waiting_for == nullptr) waiting_for = &p;
        continue;
      }
      active = true;
      if (best == nullptr) {
        best = &p;
        continue;
      }
      if (p.head_ts < best->head_ts || (p.head_ts == best->head_ts && p.id < best->id)) {
        best = &p;
      }
    }
    if (!active && uri().bounded) return false;
    if (waiting_for == nullptr && best != nullptr) {
      blocked_since_.reset();
      rd_kafka_message_t* msg = best->buf[best->head++];
      if (uri().bounded && msg->offset >= best->end) {
        rd_kafka_message_destroy(msg);
        for (size_t i = best->head; i < best->tail; ++i) rd_kafka_message_destroy(best->buf[i]);
        best->head = best->tail = 0;
        Finish(*best);
        continue;
      }
      if (msg->offset < best->pos) {  // never expected: librdkafka refetched old data
        LOG_EVERY_N(WARNING, 1000) << "kafka " << best->origin << ": dropping offset "
                                   << msg->offset << " below position " << best->pos;
        rd_kafka_message_destroy(msg);
        RETURN_IF_ERROR(Settle(*best));
        continue;
      }
      RETURN_IF_ERROR(Settle(*best));
      if (!Begin(*best, msg)) continue;
      Yield(line);
      return true;
    }
    ServeEvents();
    if (stop_.load(std::memory_order_relaxed)) return false;
    RETURN_IF_ERROR(Wait(waiting_for != nullptr, waiting_for));
  }
}

}  // namespace internal

KafkaSource::KafkaSource(std::unique_ptr<internal::KafkaSourceState> state)
    : state_(std::move(state)) {}
KafkaSource::~KafkaSource() = default;

StatusOr<std::unique_ptr<KafkaSource>> KafkaSource::Open(KafkaSourceOptions options) {
  auto state = std::make_unique<internal::KafkaSourceState>(std::move(options));
  RETURN_IF_ERROR(state->Open());
  return std::unique_ptr<KafkaSource>(new KafkaSource(std::move(state)));
}

StatusOr<bool> KafkaSource::Next(Line* line) { return state_->Next(line); }
void KafkaSource::RequestStop() { state_->RequestStop(); }
uint64_t KafkaSource::messages() const { return state_->messages(); }
uint64_t KafkaSource::rows() const { return state_->rows(); }
uint64_t KafkaSource::broker_errors() const { return state_->broker_errors(); }
std::map<int32_t, int64_t> KafkaSource::HighWatermarks() const { return state_->HighWatermarks(); }
std::map<int32_t, PartitionPositions::Entry> KafkaSource::StartPositions() const {
  return state_->start_positions();
}

}  // namespace eddy::worker
