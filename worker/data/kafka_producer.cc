#include "worker/data/internal/kafka_handle.h"
#include "worker/data/kafka.h"

namespace eddy::worker {

using namespace kafka_detail;  // NOLINT: this file's own internals

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
