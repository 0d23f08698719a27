#include "worker/data/stream_position.h"

#include <algorithm>

namespace eddy::worker {

void PartitionPositions::Advance(const RowOrigin& origin) {
  if (origin.partition < 0) return;
  Entry& e = entries_[origin.partition];
  if (origin.last_in_message) {
    e.offset = origin.offset + 1;
    e.rows_into_message = 0;
  } else {
    e.offset = origin.offset;
    e.rows_into_message = origin.index + 1;
  }
  e.high_watermark = std::max(e.high_watermark, origin.high_watermark);
  e.newest_timestamp_ms = std::max(e.newest_timestamp_ms, origin.timestamp_ms);
}

void PartitionPositions::SeeHighWatermark(int32_t partition, int64_t high_watermark) {
  auto it = entries_.find(partition);
  if (it != entries_.end()) {
    it->second.high_watermark = std::max(it->second.high_watermark, high_watermark);
  }
}

uint64_t PartitionPositions::Lag() const {
  uint64_t lag = 0;
  for (const auto& [p, e] : entries_) {
    if (e.high_watermark > e.offset) lag += static_cast<uint64_t>(e.high_watermark - e.offset);
  }
  return lag;
}

int64_t PartitionPositions::NewestTimestampMs() const {
  int64_t newest = 0;
  for (const auto& [p, e] : entries_) newest = std::max(newest, e.newest_timestamp_ms);
  return newest;
}

void PartitionPositions::ToProto(std::string_view topic,
                                 proto::Manifest::StreamPosition* out) const {
  out->set_topic(std::string(topic));
  out->clear_partitions();
  for (const auto& [p, e] : entries_) {
    proto::Manifest::PartitionOffset* o = out->add_partitions();
    o->set_partition(p);
    o->set_offset(e.offset);
    o->set_rows_into_message(e.rows_into_message);
    o->set_high_watermark(e.high_watermark);
    o->set_newest_timestamp_ms(e.newest_timestamp_ms);
  }
}

std::string PartitionPositions::Serialize(std::string_view topic) const {
  proto::Manifest::StreamPosition position;
  ToProto(topic, &position);
  return position.SerializeAsString();
}

void PartitionPositions::MergeFrom(const proto::Manifest::StreamPosition& position) {
  for (const proto::Manifest::PartitionOffset& o : position.partitions()) {
    entries_[o.partition()] = Entry{o.offset(), o.rows_into_message(), o.high_watermark(),
                                    o.newest_timestamp_ms()};
  }
}

StatusOr<proto::Manifest::StreamPosition> PartitionPositions::Parse(std::string_view bytes) {
  proto::Manifest::StreamPosition position;
  if (!position.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return DataLossError("stream position: not a serialized StreamPosition (" +
                         std::to_string(bytes.size()) + " bytes)");
  }
  for (const proto::Manifest::PartitionOffset& o : position.partitions()) {
    if (o.partition() < 0 || o.offset() < 0) {
      return DataLossError("stream position: partition " + std::to_string(o.partition()) +
                           " at offset " + std::to_string(o.offset()));
    }
  }
  return position;
}

}  // namespace eddy::worker
