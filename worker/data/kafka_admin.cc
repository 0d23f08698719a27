#include "worker/data/internal/kafka_handle.h"
#include "worker/data/kafka.h"

namespace eddy::worker {

using namespace kafka_detail;  // NOLINT: this file's own internals

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

}  // namespace eddy::worker
