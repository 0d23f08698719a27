// Internals shared by the Kafka source, admin helpers and producer
// (worker/data/kafka_*.cc): librdkafka handles with their per-handle context
// (log throttle, last error), configuration, broker-error classification and
// topic metadata. Not part of the library's interface.
// Thread-safety: HandleContext is reached from librdkafka's threads (mutex);
// the rest are plain functions.
#ifndef EDDY_WORKER_DATA_INTERNAL_KAFKA_HANDLE_H_
#define EDDY_WORKER_DATA_INTERNAL_KAFKA_HANDLE_H_

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
#include "worker/data/kafka.h"

namespace eddy::worker::kafka_detail {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr std::string_view kScheme = "kafka://";
constexpr std::string_view kDataHint = "is --data right?";  // KafkaSource's errors
constexpr auto kLogEvery = std::chrono::seconds(5);         // throttle of librdkafka's own messages

// "5 s", "0.25 s": a duration in messages.
inline std::string Seconds(milliseconds d) {
  char buf[32];
  if (d.count() % 1000 == 0) {
    std::snprintf(buf, sizeof(buf), "%lld s", static_cast<long long>(d.count() / 1000));
  } else {
    std::snprintf(buf, sizeof(buf), "%.3g s", static_cast<double>(d.count()) / 1000.0);
  }
  return buf;
}

inline int TimeoutMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  return static_cast<int>(std::clamp<int64_t>(left, 0, std::numeric_limits<int>::max()));
}

inline std::string ErrName(rd_kafka_resp_err_t err) { return rd_kafka_err2str(err); }

// Errors that mean "no broker answered (yet)": retried until the deadline.
inline bool IsTransient(rd_kafka_resp_err_t err) {
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

inline bool ValidTopic(std::string_view t) {
  if (t.empty() || t.size() > 249 || t == "." || t == "..") return false;
  for (char c : t) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

inline std::optional<int64_t> ParseInt(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return v;
}

inline Status ValidateBrokers(std::string_view brokers) {
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

inline HandleContext* ContextOf(const rd_kafka_t* rk) {
  return static_cast<HandleContext*>(rd_kafka_opaque(rk));
}

inline void LogCallback(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
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

inline Status SetProperty(rd_kafka_conf_t* conf, const std::string& key, const std::string& value,
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
inline StatusOr<ConfPtr> MakeConf(const KafkaUri& uri, const Properties& defaults,
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

inline StatusOr<HandlePtr> NewHandle(rd_kafka_type_t type, ConfPtr conf) {
  char errstr[512];
  rd_kafka_t* rk = rd_kafka_new(type, conf.get(), errstr, sizeof(errstr));
  if (rk == nullptr) return InvalidArgumentError(std::string("librdkafka: ") + errstr);
  conf.release();  // owned by rk now
  return HandlePtr(rk);
}

// `hint` ends the message: what the user should check.
inline Status Unreachable(const KafkaUri& uri, milliseconds waited, rd_kafka_resp_err_t err,
                          HandleContext* ctx,
                          std::string_view hint = "is the broker address right?") {
  std::string message = "Kafka broker(s) " + uri.brokers + " unreachable for " + Seconds(waited) +
                        ": " + ErrName(err);
  const std::string last = ctx != nullptr ? ctx->LastError() : "";
  if (!last.empty()) message += " (last: " + last + ")";
  return UnavailableError(message + "; " + std::string(hint));
}

// Errors meaning that no broker answered at all (as opposed to a broker
// answering "not yet", e.g. a partition leader still being elected).
inline bool IsConnectivity(rd_kafka_resp_err_t err) {
  return err == RD_KAFKA_RESP_ERR__TRANSPORT || err == RD_KAFKA_RESP_ERR__TIMED_OUT ||
         err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__RESOLVE;
}

// The error of a broker request that failed with `err` after retries since `start`.
inline Status BrokerError(const KafkaUri& uri, const std::string& what, Clock::time_point start,
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
inline rd_kafka_resp_err_t RetryTransient(Call call, Clock::time_point deadline) {
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

inline StatusOr<TopicInfo> DescribeTopic(rd_kafka_t* rk, const KafkaUri& uri,
                                         Clock::time_point start, Clock::time_point deadline,
                                         HandleContext* ctx,
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

inline StatusOr<AdminHandle> OpenAdminHandle(const KafkaUri& uri, bool with_group) {
  AdminHandle h;
  h.ctx = std::make_unique<HandleContext>();
  h.ctx->brokers = uri.brokers;
  Properties required = {{"enable.auto.commit", "false"}, {"enable.auto.offset.store", "false"}};
  if (with_group) required.emplace_back("group.id", uri.group);
  ASSIGN_OR_RETURN(ConfPtr conf, MakeConf(uri, {}, required, h.ctx.get()));
  ASSIGN_OR_RETURN(h.rk, NewHandle(RD_KAFKA_CONSUMER, std::move(conf)));
  return h;
}

}  // namespace eddy::worker::kafka_detail

#endif  // EDDY_WORKER_DATA_INTERNAL_KAFKA_HANDLE_H_
