#include "worker/data/kafka.h"

#include <glog/logging.h>
#include <librdkafka/rdkafka.h>

#include <algorithm>
#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <limits>
#include <optional>
#include <set>
#include <thread>

#include "common/mutex.h"
#include "common/net.h"

namespace eddy::worker {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::string_view kScheme = "kafka://";
constexpr std::string_view kDataHint = "is --data right?";  // KafkaSource's errors
constexpr auto kLogEvery = std::chrono::seconds(5);         // throttle of librdkafka's own messages

// "5 s", "0.25 s": a duration in messages.
std::string Seconds(milliseconds d) {
  char buf[32];
  if (d.count() % 1000 == 0) {
    std::snprintf(buf, sizeof(buf), "%lld s", static_cast<long long>(d.count() / 1000));
  } else {
    std::snprintf(buf, sizeof(buf), "%.3g s", static_cast<double>(d.count()) / 1000.0);
  }
  return buf;
}

int TimeoutMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, std::numeric_limits<int>::max()));
}

std::string ErrName(rd_kafka_resp_err_t err) { return rd_kafka_err2str(err); }

// Errors that mean "no broker answered (yet)": retried until the deadline.
bool IsTransient(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__WAIT_COORD:
    case RD_KAFKA_RESP_ERR__RESOLVE:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_COORDINATOR:
    case RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
      return true;
    default:
      return false;
  }
}

bool ValidTopic(std::string_view t) {
  if (t.empty() || t.size() > 249 || t == "." || t == "..") return false;
  for (char c : t) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::optional<int64_t> ParseInt(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

Status ValidateBrokers(std::string_view brokers) {
  if (brokers.empty()) {
    return InvalidArgumentError("expected kafka://host:port[,host:port...]/topic: no broker given");
  }
  size_t begin = 0;
  while (begin <= brokers.size()) {
    size_t end = brokers.find(',', begin);
    if (end == std::string_view::npos) end = brokers.size();
    const std::string_view b = brokers.substr(begin, end - begin);
    const size_t colon = b.rfind(':');
    if (b.empty() || colon == std::string_view::npos || colon == 0) {
      return InvalidArgumentError("bad broker '" + std::string(b) +
                                  "': expected host:port (e.g. 127.0.0.1:9092)");
    }
    const std::optional<int64_t> port = ParseInt(b.substr(colon + 1));
    if (!port || *port < 1 || *port > 65535) {
      return InvalidArgumentError("bad broker '" + std::string(b) +
                                  "': expected a port number in 1..65535 after ':'");
    }
    begin = end + 1;
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------
// librdkafka handles.

// Per-handle state reached from librdkafka's callbacks through rd_kafka_opaque:
// the log throttle and the last error message (for error reports). The log
// callback runs on librdkafka's threads, hence the mutex.
struct HandleContext {
  std::string brokers;
  void* owner = nullptr;  // the object whose error / stats / delivery callbacks these are
  Mutex mu;
  Clock::time_point last_log GUARDED_BY(mu){};
  uint64_t suppressed GUARDED_BY(mu) = 0;
  std::string last_error GUARDED_BY(mu);

  void NoteError(const std::string& message) {
    MutexLock lock(&mu);
    last_error = message;
  }
  std::string LastError() {
    MutexLock lock(&mu);
    return last_error;
  }
  // Logs `message` unless something was logged less than kLogEvery ago.
  void ThrottledLog(int severity, const std::string& message) {
    uint64_t suppressed_before = 0;
    {
      MutexLock lock(&mu);
      const Clock::time_point now = Clock::now();
      if (last_log != Clock::time_point{} && now - last_log < kLogEvery) {
        ++suppressed;
        return;
      }
      last_log = now;
      suppressed_before = suppressed;
      suppressed = 0;
    }
    std::string text = "kafka " + brokers + ": " + message;
    if (suppressed_before > 0) {
      text += " (" + std::to_string(suppressed_before) + " similar messages suppressed)";
    }
    if (severity >= google::WARNING) {
      LOG(WARNING) << text;
    } else {
      LOG(INFO) << text;
    }
  }
};

HandleContext* ContextOf(const rd_kafka_t* rk) {
  return static_cast<HandleContext*>(rd_kafka_opaque(rk));
}

void LogCallback(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  HandleContext* ctx = ContextOf(rk);
  if (ctx == nullptr) return;
  const std::string message = std::string(fac) + ": " + buf;
  if (level <= 4) ctx->NoteError(buf);  // LOG_WARNING and worse
  if (level <= 4) {
    ctx->ThrottledLog(google::WARNING, message);
  } else if (VLOG_IS_ON(1)) {
    ctx->ThrottledLog(google::INFO, message);
  }
}

struct ConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
using ConfPtr = std::unique_ptr<rd_kafka_conf_t, ConfDeleter>;

struct HandleDeleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
  }
};
using HandlePtr = std::unique_ptr<rd_kafka_t, HandleDeleter>;

struct TopicDeleter {
  void operator()(rd_kafka_topic_t* rkt) const { rd_kafka_topic_destroy(rkt); }
};
using TopicPtr = std::unique_ptr<rd_kafka_topic_t, TopicDeleter>;

struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using ListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

struct QueueDeleter {
  void operator()(rd_kafka_queue_t* q) const { rd_kafka_queue_destroy(q); }
};
using QueuePtr = std::unique_ptr<rd_kafka_queue_t, QueueDeleter>;

struct EventDeleter {
  void operator()(rd_kafka_event_t* e) const { rd_kafka_event_destroy(e); }
};
using EventPtr = std::unique_ptr<rd_kafka_event_t, EventDeleter>;

using Properties = std::vector<std::pair<std::string, std::string>>;

Status SetProperty(rd_kafka_conf_t* conf, const std::string& key, const std::string& value,
                   bool from_uri) {
  char errstr[512];
  if (rd_kafka_conf_set(conf, key.c_str(), value.c_str(), errstr, sizeof(errstr)) !=
      RD_KAFKA_CONF_OK) {
    return InvalidArgumentError((from_uri ? "URI parameter rdkafka." : "librdkafka property ") +
                                key + "=" + value + ": " + errstr);
  }
  return OkStatus();
}

// A configuration: `defaults` (tuning), then the URI's rdkafka.* properties,
// then `required` (what Eddy relies on), then callbacks with `ctx` as opaque.
StatusOr<ConfPtr> MakeConf(const KafkaUri& uri, const Properties& defaults,
                           const Properties& required, HandleContext* ctx) {
  ConfPtr conf(rd_kafka_conf_new());
  const Properties common = {
      {"bootstrap.servers", uri.brokers},
      {"allow.auto.create.topics", "false"},  // a missing topic is an error, not created
      {"reconnect.backoff.max.ms", "1000"},   // a restarted broker is seen again quickly
      {"log.connection.close", "false"},
  };
  for (const auto& [k, v] : common) RETURN_IF_ERROR(SetProperty(conf.get(), k, v, false));
  for (const auto& [k, v] : defaults) RETURN_IF_ERROR(SetProperty(conf.get(), k, v, false));
  for (const auto& [k, v] : uri.config) RETURN_IF_ERROR(SetProperty(conf.get(), k, v, true));
  RETURN_IF_ERROR(SetProperty(conf.get(), "bootstrap.servers", uri.brokers, false));
  for (const auto& [k, v] : required) RETURN_IF_ERROR(SetProperty(conf.get(), k, v, false));
  rd_kafka_conf_set_opaque(conf.get(), ctx);
  rd_kafka_conf_set_log_cb(conf.get(), &LogCallback);
  return conf;
}

StatusOr<HandlePtr> NewHandle(rd_kafka_type_t type, ConfPtr conf) {
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), errstr, sizeof(errstr));
  if (rk == nullptr) return InvalidArgumentError(std::string("librdkafka: ") + errstr);
  conf.release();  // owned by rk now
  return HandlePtr(rk);
}

// `hint` ends the message: what the user should check.
Status Unreachable(const KafkaUri& uri, milliseconds waited, rd_kafka_resp_err_t err,
                   HandleContext* ctx, std::string_view hint = "is the broker address right?") {
  std::string message = "Kafka broker(s) " + uri.brokers + " unreachable for " + Seconds(waited) +
                        ": " + ErrName(err);
  const std::string last = ctx != nullptr ? ctx->LastError() : "";
  if (!last.empty()) message += " (last: " + last + ")";
  return UnavailableError(message + "; " + std::string(hint));
}

// Errors meaning that no broker answered at all (as opposed to a broker
// answering "not yet", e.g. a partition leader still being elected).
bool IsConnectivity(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__TIMED_OUT ||
         err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__RESOLVE;
}

// The error of a broker request that failed with `err` after retries since `start`.
Status BrokerError(const KafkaUri& uri, const std::string& what, Clock::time_point start,
                   rd_kafka_resp_err_t err, HandleContext* ctx,
                   std::string_view hint = "is the broker address right?") {
  const auto waited = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  if (IsConnectivity(err)) return Unreachable(uri, waited, err, ctx, hint);
  return UnavailableError(what + " from Kafka broker(s) " + uri.brokers + ": " + ErrName(err) +
                          (IsTransient(err) ? " (still after " + Seconds(waited) + ")" : ""));
}

// Calls `call(timeout_ms)` until it succeeds, fails for good, or `deadline`
// passes; an instant transient failure is retried after a short backoff.
template <typename Call>
rd_kafka_resp_err_t RetryTransient(Call call, Clock::time_point deadline) {
  for (;;) {
    const Clock::time_point before = Clock::now();
    const rd_kafka_resp_err_t err = call(std::max(1, TimeoutMs(deadline)));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR || !IsTransient(err) || Clock::now() >= deadline) {
      return err;
    }
    std::this_thread::sleep_until(std::min(before + milliseconds(100), deadline));
  }
}

// The topic's metadata (partition count and leaders), retrying while no broker
// answers, until `deadline`. NotFound if the topic does not exist.
struct TopicInfo {
  int32_t partitions = 0;
  bool all_led = true;  // every partition has a leader and no error
};

StatusOr<TopicInfo> DescribeTopic(rd_kafka_t* rk, const KafkaUri& uri, Clock::time_point start,
                                  Clock::time_point deadline, HandleContext* ctx,
                                  std::string_view hint = "is the broker address right?") {
  TopicPtr rkt(rd_kafka_topic_new(rk, uri.topic.c_str(), nullptr));
  if (!rkt) return InternalError("rd_kafka_topic_new(" + uri.topic + ") failed");
  rd_kafka_resp_err_t last = RD_KAFKA_RESP_ERR__TIMED_OUT;
  for (;;) {
    const rd_kafka_metadata_t* md = nullptr;
    const Clock::time_point before = Clock::now();
    const rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt.get(), &md, TimeoutMs(deadline));
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::unique_ptr<const rd_kafka_metadata_t, void (*)(const rd_kafka_metadata_t*)> holder(
          md, &rd_kafka_metadata_destroy);
      rd_kafka_resp_err_t topic_err = RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
      TopicInfo info;
      for (int i = 0; i < md->topic_cnt; ++i) {
        const rd_kafka_metadata_topic_t& t = md->topics[i];
        if (uri.topic != t.topic) continue;
        topic_err = t.err;
        info.partitions = t.partition_cnt;
        for (int j = 0; j < t.partition_cnt; ++j) {
          if (t.partitions[j].err != RD_KAFKA_RESP_ERR_NO_ERROR || t.partitions[j].leader < 0) {
            info.all_led = false;
          }
        }
      }
      if (topic_err == RD_KAFKA_RESP_ERR_NO_ERROR) return info;
      if (topic_err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
          topic_err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
        return NotFoundError("Kafka topic '" + uri.topic + "' does not exist at " + uri.brokers);
      }
      if (!IsTransient(topic_err)) {
        return UnavailableError("Kafka topic '" + uri.topic + "' at " + uri.brokers + ": " +
                                ErrName(topic_err));
      }
      last = topic_err;
    } else if (IsTransient(err)) {
      last = err;
    } else {
      return UnavailableError("Kafka metadata from " + uri.brokers + ": " + ErrName(err));
    }
    if (Clock::now() >= deadline) break;
    // An instant failure (e.g. connection refused) is retried after a short
    // backoff instead of spinning.
    const auto backoff = std::min(Clock::now() + milliseconds(100), deadline);
    if (Clock::now() - before < milliseconds(100)) std::this_thread::sleep_until(backoff);
  }
  return Unreachable(uri, std::chrono::duration_cast<milliseconds>(Clock::now() - start), last, ctx,
                     hint);
}

// A consumer handle for admin queries (no group unless `with_group`).
struct AdminHandle {
  std::unique_ptr<HandleContext> ctx;
  HandlePtr rk;
};

StatusOr<AdminHandle> OpenAdminHandle(const KafkaUri& uri, bool with_group) {
  AdminHandle h;
  h.ctx = std::make_unique<HandleContext>();
  h.ctx->brokers = uri.brokers;
  Properties required = {{"enable.auto.commit", "false"}, {"enable.auto.offset.store", "false"}};
  if (with_group) required.emplace_back("group.id", uri.group);
  ASSIGN_OR_RETURN(ConfPtr conf, MakeConf(uri, {}, required, h.ctx.get()));
  ASSIGN_OR_RETURN(h.rk, NewHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  return h;
}

}  // namespace

// ---------------------------------------------------------------------------
// KafkaUri.

bool IsKafkaUri(std::string_view data) { return data.substr(0, kScheme.size()) == kScheme; }

std::string KafkaUri::ToString() const {
  std::string s = std::string(kScheme) + brokers + "/" + topic + "?group=" + group + "&start=";
  switch (start) {
    case Start::kEarliest:
      s += "earliest";
      break;
    case Start::kLatest:
      s += "latest";
      break;
    case Start::kTimestamp:
      s += std::to_string(start_timestamp_ms);
      break;
  }
  s += bounded ? "&end=latest" : "&end=never";
  s += several_rows_per_message ? "&rows=lines" : "&rows=one";
  for (const auto& [k, v] : config) s += "&rdkafka." + k + "=" + v;
  return s;
}

StatusOr<KafkaUri> ParseKafkaUri(std::string_view uri) {
  constexpr std::string_view kForm =
      "kafka://host:port[,host:port...]/topic[?group=G&start=earliest|latest|<unix ms>"
      "&end=never|latest&rows=one|lines&rdkafka.<property>=<value>...]";
  if (!IsKafkaUri(uri)) {
    return InvalidArgumentError("not a Kafka URI: '" + std::string(uri) + "'; expected " +
                                std::string(kForm));
  }
  std::string_view rest = uri.substr(kScheme.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) {
    return InvalidArgumentError("Kafka URI '" + std::string(uri) + "' names no topic; expected " +
                                std::string(kForm));
  }
  KafkaUri out;
  out.brokers = std::string(rest.substr(0, slash));
  RETURN_IF_ERROR(ValidateBrokers(out.brokers).WithContext("Kafka URI '" + std::string(uri) + "'"));
  rest = rest.substr(slash + 1);
  const size_t question = rest.find('?');
  out.topic = std::string(rest.substr(0, question));
  if (!ValidTopic(out.topic)) {
    return InvalidArgumentError(
        "Kafka URI '" + std::string(uri) + "': bad topic name '" + out.topic +
        "'; expected 1..249 characters of [a-zA-Z0-9._-] (not '.' or '..')");
  }
  if (question == std::string_view::npos) return out;
  std::string_view query = rest.substr(question + 1);
  std::set<std::string, std::less<>> seen;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    const size_t eq = param.find('=');
    const auto bad = [&](const std::string& expected) {
      return InvalidArgumentError("Kafka URI '" + std::string(uri) + "': bad parameter '" +
                                  std::string(param) + "'; expected " + expected);
    };
    if (eq == std::string_view::npos) return bad("name=value");
    const std::string_view key = param.substr(0, eq);
    const std::string_view value = param.substr(eq + 1);
    if (!seen.insert(std::string(key)).second) {
      return InvalidArgumentError("Kafka URI '" + std::string(uri) + "': parameter '" +
                                  std::string(key) + "' given twice");
    }
    if (key == "group") {
      if (value.empty()) return bad("group=<consumer group name>");
      out.group = std::string(value);
    } else if (key == "start") {
      if (value == "earliest") {
        out.start = KafkaUri::Start::kEarliest;
      } else if (value == "latest") {
        out.start = KafkaUri::Start::kLatest;
      } else if (std::optional<int64_t> ms = ParseInt(value)) {
        out.start = KafkaUri::Start::kTimestamp;
        out.start_timestamp_ms = *ms;
      } else {
        return bad("start=earliest, start=latest or start=<unix time in ms>");
      }
    } else if (key == "end") {
      if (value == "never") {
        out.bounded = false;
      } else if (value == "latest") {
        out.bounded = true;
      } else {
        return bad("end=never or end=latest");
      }
    } else if (key == "rows") {
      if (value == "one") {
        out.several_rows_per_message = false;
      } else if (value == "lines") {
        out.several_rows_per_message = true;
      } else {
        return bad("rows=one (a message is a row) or rows=lines (rows separated by '\\n')");
      }
    } else if (key.substr(0, 8) == "rdkafka." && key.size() > 8) {
      out.config.emplace_back(std::string(key.substr(8)), std::string(value));
    } else {
      return bad("one of group=, start=, end=, rows=, rdkafka.<property>=");
    }
  }
  return out;
}

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

// ---------------------------------------------------------------------------
// Admin helpers.

StatusOr<int32_t> KafkaPartitionCount(const KafkaUri& uri, milliseconds timeout) {
  const Clock::time_point start = Clock::now();
  ASSIGN_OR_RETURN(AdminHandle h, OpenAdminHandle(uri, false));
  ASSIGN_OR_RETURN(TopicInfo info,
                   DescribeTopic(h.rk.get(), uri, start, start + timeout, h.ctx.get()));
  return info.partitions;
}

Status CreateKafkaTopic(const KafkaUri& uri, int32_t partitions, milliseconds timeout) {
  if (partitions < 1) return InvalidArgumentError("a topic needs at least one partition");
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + timeout;
  ASSIGN_OR_RETURN(AdminHandle h, OpenAdminHandle(uri, false));
  char errstr[512];
  rd_kafka_NewTopic_t* topic =
      rd_kafka_NewTopic_new(uri.topic.c_str(), partitions, -1, errstr, sizeof(errstr));
  if (topic == nullptr) return InvalidArgumentError("new topic '" + uri.topic + "': " + errstr);
  rd_kafka_AdminOptions_t* options =
      rd_kafka_AdminOptions_new(h.rk.get(), RD_KAFKA_ADMIN_OP_CREATETOPICS);
  const int timeout_ms = std::max(1, TimeoutMs(deadline));
  rd_kafka_AdminOptions_set_request_timeout(options, timeout_ms, errstr, sizeof(errstr));
  rd_kafka_AdminOptions_set_operation_timeout(options, timeout_ms, errstr, sizeof(errstr));
  QueuePtr queue(rd_kafka_queue_new(h.rk.get()));
  rd_kafka_CreateTopics(h.rk.get(), &topic, 1, options, queue.get());
  rd_kafka_AdminOptions_destroy(options);
  rd_kafka_NewTopic_destroy(topic);
  EventPtr event(rd_kafka_queue_poll(queue.get(), timeout_ms + 1000));
  if (!event) {
    return Unreachable(uri, std::chrono::duration_cast<milliseconds>(Clock::now() - start),
                       RD_KAFKA_RESP_ERR__TIMED_OUT, h.ctx.get());
  }
  if (const rd_kafka_resp_err_t err = rd_kafka_event_error(event.get()); err) {
    if (IsTransient(err)) {
      return Unreachable(uri, std::chrono::duration_cast<milliseconds>(Clock::now() - start), err,
                         h.ctx.get());
    }
    return UnavailableError("creating Kafka topic '" + uri.topic + "' at " + uri.brokers + ": " +
                            rd_kafka_event_error_string(event.get()));
  }
  size_t n = 0;
  const rd_kafka_topic_result_t** results =
      rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event.get()), &n);
  bool existed = false;
  for (size_t i = 0; i < n; ++i) {
    const rd_kafka_resp_err_t err = rd_kafka_topic_result_error(results[i]);
    if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
      existed = true;
    } else if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* why = rd_kafka_topic_result_error_string(results[i]);
      return (err == RD_KAFKA_RESP_ERR_INVALID_PARTITIONS ||
                      err == RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR ||
                      err == RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION ||
                      err == RD_KAFKA_RESP_ERR_POLICY_VIOLATION
                  ? InvalidArgumentError
                  : UnavailableError)("creating Kafka topic '" + uri.topic + "' at " + uri.brokers +
                                      ": " + (why ? why : ErrName(err)));
    }
  }
  // Wait until the metadata shows every partition with a leader, so producers
  // and consumers opened next find it.
  for (;;) {
    StatusOr<TopicInfo> info = DescribeTopic(h.rk.get(), uri, start, deadline, h.ctx.get());
    if (info.ok()) {
      if (existed && info->partitions != partitions) {
        return Status(StatusCode::kAlreadyExists,
                      "Kafka topic '" + uri.topic + "' already exists with " +
                          std::to_string(info->partitions) + " partitions, not " +
                          std::to_string(partitions));
      }
      if (info->partitions == partitions && info->all_led) return OkStatus();
    } else if (info.status().code() != StatusCode::kNotFound) {
      return info.status();
    }
    if (Clock::now() >= deadline) {
      return UnavailableError("Kafka topic '" + uri.topic + "' created at " + uri.brokers +
                              " but its partitions have no leader after " + Seconds(timeout));
    }
    std::this_thread::sleep_for(milliseconds(50));  // metadata propagation: poll again
  }
}

Status CommitKafkaOffsets(const KafkaUri& uri, const std::map<int32_t, int64_t>& next_offsets,
                          milliseconds timeout) {
  if (next_offsets.empty()) return OkStatus();
  const Clock::time_point start = Clock::now();
  ASSIGN_OR_RETURN(AdminHandle h, OpenAdminHandle(uri, true));
  ListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(next_offsets.size())));
  for (const auto& [p, offset] : next_offsets) {
    if (p < 0 || offset < 0) {
      return InvalidArgumentError("cannot commit offset " + std::to_string(offset) +
                                  " of partition " + std::to_string(p));
    }
    rd_kafka_topic_partition_list_add(list.get(), uri.topic.c_str(), p)->offset = offset;
  }
  QueuePtr queue(rd_kafka_queue_new(h.rk.get()));
  if (rd_kafka_resp_err_t err =
          rd_kafka_commit_queue(h.rk.get(), list.get(), queue.get(), nullptr, nullptr);
      err) {
    return UnavailableError("committing offsets of '" + uri.topic + "' for group '" + uri.group +
                            "' at " + uri.brokers + ": " + ErrName(err));
  }
  EventPtr event(rd_kafka_queue_poll(queue.get(), static_cast<int>(timeout.count())));
  if (!event) {
    return Unreachable(uri, std::chrono::duration_cast<milliseconds>(Clock::now() - start),
                       RD_KAFKA_RESP_ERR__TIMED_OUT, h.ctx.get());
  }
  if (const rd_kafka_resp_err_t err = rd_kafka_event_error(event.get()); err) {
    if (IsTransient(err)) {
      return Unreachable(uri, std::chrono::duration_cast<milliseconds>(Clock::now() - start), err,
                         h.ctx.get());
    }
    return UnavailableError("committing offsets of '" + uri.topic + "' for group '" + uri.group +
                            "' at " + uri.brokers + ": " +
                            rd_kafka_event_error_string(event.get()));
  }
  if (const rd_kafka_topic_partition_list_t* result =
          rd_kafka_event_topic_partition_list(event.get())) {
    for (int i = 0; i < result->cnt; ++i) {
      if (result->elems[i].err) {
        return UnavailableError("committing offset of " + uri.topic + "/" +
                                std::to_string(result->elems[i].partition) + " for group '" +
                                uri.group + "': " + ErrName(result->elems[i].err));
      }
    }
  }
  return OkStatus();
}

StatusOr<std::map<int32_t, int64_t>> KafkaCommittedOffsets(const KafkaUri& uri,
                                                           milliseconds timeout) {
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + timeout;
  ASSIGN_OR_RETURN(AdminHandle h, OpenAdminHandle(uri, true));
  ASSIGN_OR_RETURN(TopicInfo info, DescribeTopic(h.rk.get(), uri, start, deadline, h.ctx.get()));
  ListPtr list(rd_kafka_topic_partition_list_new(info.partitions));
  for (int32_t p = 0; p < info.partitions; ++p) {
    rd_kafka_topic_partition_list_add(list.get(), uri.topic.c_str(), p);
  }
  const rd_kafka_resp_err_t err = RetryTransient(
      [&](int timeout_ms) { return rd_kafka_committed(h.rk.get(), list.get(), timeout_ms); },
      deadline);
  if (err) {
    return BrokerError(uri,
                       "committed offsets of '" + uri.topic + "' for group '" + uri.group + "'",
                       start, err, h.ctx.get());
  }
  std::map<int32_t, int64_t> out;
  for (int i = 0; i < list->cnt; ++i) {
    const rd_kafka_topic_partition_t& tp = list->elems[i];
    if (tp.err) {
      return UnavailableError("committed offset of " + uri.topic + "/" +
                              std::to_string(tp.partition) + " for group '" + uri.group +
                              "': " + ErrName(tp.err));
    }
    if (tp.offset >= 0) out[tp.partition] = tp.offset;
  }
  return out;
}

StatusOr<std::map<int32_t, std::pair<int64_t, int64_t>>> KafkaWatermarks(const KafkaUri& uri,
                                                                         milliseconds timeout) {
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + timeout;
  ASSIGN_OR_RETURN(AdminHandle h, OpenAdminHandle(uri, false));
  ASSIGN_OR_RETURN(TopicInfo info, DescribeTopic(h.rk.get(), uri, start, deadline, h.ctx.get()));
  std::map<int32_t, std::pair<int64_t, int64_t>> out;
  for (int32_t p = 0; p < info.partitions; ++p) {
    int64_t low = 0, high = 0;
    const rd_kafka_resp_err_t err = RetryTransient(
        [&](int timeout_ms) {
          return rd_kafka_query_watermark_offsets(h.rk.get(), uri.topic.c_str(), p, &low, &high,
                                                  timeout_ms);
        },
        deadline);
    if (err) {
      return BrokerError(uri, "watermarks of " + uri.topic + "/" + std::to_string(p), start, err,
                         h.ctx.get());
    }
    out[p] = {low, high};
  }
  return out;
}

// ---------------------------------------------------------------------------
// KafkaProducer.

namespace internal {

class KafkaProducerState {
 public:
  explicit KafkaProducerState(const KafkaUri& uri, milliseconds timeout)
      : uri_(uri), timeout_(timeout) {
    ctx_.brokers = uri.brokers;
    ctx_.owner = this;
  }
  ~KafkaProducerState() {
    if (rk_) {
      if (rd_kafka_flush(rk_.get(), 10000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        LOG(WARNING) << "kafka " << uri_.brokers << ": " << rd_kafka_outq_len(rk_.get())
                     << " messages to '" << uri_.topic << "' undelivered at close";
      }
    }
    rkt_.reset();
    rk_.reset();
  }

  Status Open() {
    const Clock::time_point start = Clock::now();
    const Properties defaults = {
        {"linger.ms", "5"},
        {"batch.num.messages", "10000"},
        {"queue.buffering.max.messages", "1000000"},
    };
    const Properties required = {{"enable.idempotence", "true"}, {"acks", "all"}};
    ASSIGN_OR_RETURN(ConfPtr conf, MakeConf(uri_, defaults, required, &ctx_));
    rd_kafka_conf_set_dr_msg_cb(conf.get(), &DeliveryCallback);
    ASSIGN_OR_RETURN(rk_, NewHandle(RD_KAFKA_PRODUCER, std::move(conf)));
    ASSIGN_OR_RETURN(TopicInfo info,
                     DescribeTopic(rk_.get(), uri_, start, start + timeout_, &ctx_));
    partitions_ = info.partitions;
    rkt_.reset(rd_kafka_topic_new(rk_.get(), uri_.topic.c_str(), nullptr));
    if (!rkt_) return InternalError("rd_kafka_topic_new(" + uri_.topic + ") failed");
    return OkStatus();
  }

  Status Send(int32_t partition, std::string_view value, int64_t timestamp_ms) {
    RETURN_IF_ERROR(CheckFailures());
    if (partition >= partitions_ || partition < -1) {
      return InvalidArgumentError("partition " + std::to_string(partition) + " of '" + uri_.topic +
                                  "' does not exist (it has " + std::to_string(partitions_) + ")");
    }
    const int32_t p = partition >= 0
                          ? partition
                          : static_cast<int32_t>(sent_ % static_cast<uint64_t>(partitions_));
    Clock::time_point deadline{};
    for (;;) {
      const rd_kafka_resp_err_t err =
          rd_kafka_producev(rk_.get(), RD_KAFKA_V_RKT(rkt_.get()), RD_KAFKA_V_PARTITION(p),
                            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                            RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                            RD_KAFKA_V_TIMESTAMP(timestamp_ms), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        return UnavailableError("producing to " + uri_.topic + "/" + std::to_string(p) + " at " +
                                uri_.brokers + ": " + ErrName(err));
      }
      // The local queue is full: serve delivery reports until there is room.
      if (deadline == Clock::time_point{}) deadline = Clock::now() + timeout_;
      if (Clock::now() >= deadline) {
        return DeadlineExceededError("producer queue for '" + uri_.topic + "' at " + uri_.brokers +
                                     " stayed full for " + Seconds(timeout_) + ": " +
                                     ctx_.LastError());
      }
      rd_kafka_poll(rk_.get(), 100);
      RETURN_IF_ERROR(CheckFailures());
    }
    if ((++sent_ & 1023) == 0) rd_kafka_poll(rk_.get(), 0);
    return OkStatus();
  }

  Status Flush(milliseconds timeout) {
    const rd_kafka_resp_err_t err = rd_kafka_flush(rk_.get(), static_cast<int>(timeout.count()));
    RETURN_IF_ERROR(CheckFailures());
    if (err == RD_KAFKA_RESP_ERR__TIMED_OUT) {
      std::string last = ctx_.LastError();
      return DeadlineExceededError(std::to_string(rd_kafka_outq_len(rk_.get())) + " messages to '" +
                                   uri_.topic + "' not delivered to " + uri_.brokers + " within " +
                                   Seconds(timeout) +
                                   (last.empty() ? "" : " (last: " + last + ")"));
    }
    if (err) return UnavailableError("flushing '" + uri_.topic + "': " + ErrName(err));
    return OkStatus();
  }

  int32_t partitions() const { return partitions_; }
  uint64_t sent() const { return sent_; }
  uint64_t delivered() const { return delivered_; }

 private:
  static void DeliveryCallback(rd_kafka_t* rk, const rd_kafka_message_t* msg, void*) {
    auto* self = static_cast<KafkaProducerState*>(ContextOf(rk)->owner);
    if (msg->err) {
      if (self->failed_++ == 0) {
        self->first_failure_ = "delivery to " + self->uri_.topic + "/" +
                               std::to_string(msg->partition) + " at " + self->uri_.brokers +
                               " failed: " + rd_kafka_err2str(msg->err);
      }
    } else {
      ++self->delivered_;
    }
  }

  Status CheckFailures() {
    char errstr[512];
    if (rd_kafka_resp_err_t err = rd_kafka_fatal_error(rk_.get(), errstr, sizeof(errstr)); err) {
      return InternalError("Kafka producer for '" + uri_.topic + "' at " + uri_.brokers +
                           " failed: " + errstr);
    }
    if (failed_ > 0) {
      return UnavailableError(first_failure_ + " (" + std::to_string(failed_) +
                              " messages failed)");
    }
    return OkStatus();
  }

  const KafkaUri uri_;
  const milliseconds timeout_;
  HandleContext ctx_;
  HandlePtr rk_;
  TopicPtr rkt_;
  int32_t partitions_ = 0;
  uint64_t sent_ = 0;
  uint64_t delivered_ = 0;
  uint64_t failed_ = 0;
  std::string first_failure_;
};

}  // namespace internal

KafkaProducer::KafkaProducer(std::unique_ptr<internal::KafkaProducerState> state)
    : state_(std::move(state)) {}
KafkaProducer::~KafkaProducer() = default;

StatusOr<std::unique_ptr<KafkaProducer>> KafkaProducer::Open(const KafkaUri& uri,
                                                             milliseconds timeout) {
  auto state = std::make_unique<internal::KafkaProducerState>(uri, timeout);
  RETURN_IF_ERROR(state->Open());
  return std::unique_ptr<KafkaProducer>(new KafkaProducer(std::move(state)));
}

Status KafkaProducer::Send(int32_t partition, std::string_view value, int64_t timestamp_ms) {
  return state_->Send(partition, value, timestamp_ms);
}
Status KafkaProducer::Flush(milliseconds timeout) { return state_->Flush(timeout); }
int32_t KafkaProducer::partitions() const { return state_->partitions(); }
uint64_t KafkaProducer::sent() const { return state_->sent(); }
uint64_t KafkaProducer::delivered() const { return state_->delivered(); }

}  // namespace eddy::worker
