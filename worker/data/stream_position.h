// Positions in a partitioned stream (a Kafka topic). A row read from partition p
// carries its RowOrigin; a worker's position is, per partition, the next message
// to train on and how many rows of it were already trained (a message may hold
// several rows). Versions record these positions and a resume seeks to them, so
// every message is trained exactly once whichever worker reads the partition.
// Thread-safety: plain values; not synchronised.
#ifndef EDDY_WORKER_DATA_STREAM_POSITION_H_
#define EDDY_WORKER_DATA_STREAM_POSITION_H_

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

#include "common/proto/model.pb.h"
#include "common/status.h"

namespace eddy::worker {

// Where one row came from. partition < 0: not a partitioned stream.
struct RowOrigin {
  int32_t partition = -1;
  uint32_t index = 0;          // the row's index within its message (0-based)
  int64_t offset = -1;         // the message's offset in its partition
  int64_t timestamp_ms = 0;    // the message's Kafka timestamp (0: none)
  int64_t high_watermark = -1; // the partition's end when the message was read (-1: unknown)
  bool last_in_message = true; // no row of the message follows this one
};

// Per-partition positions of one worker (or of a version: every partition).
class PartitionPositions {
 public:
  struct Entry {
    int64_t offset = 0;             // next message to train on
    uint32_t rows_into_message = 0; // rows of it already trained
    int64_t high_watermark = -1;    // as last seen; -1: unknown
    int64_t newest_timestamp_ms = 0;
  };

  // The row `origin` was trained: the partition moves past it. Ignores rows
  // without a partition.
  void Advance(const RowOrigin& origin);
  // Sets a partition's position (a start or resume point).
  void Set(int32_t partition, Entry entry) { entries_[partition] = entry; }
  // Notes a newer end of `partition` (lag is measured against it).
  void SeeHighWatermark(int32_t partition, int64_t high_watermark);

  const std::map<int32_t, Entry>& entries() const { return entries_; }
  bool empty() const { return entries_.empty(); }
  // Messages behind the end, summed over partitions with a known end.
  uint64_t Lag() const;
  // The newest Kafka timestamp trained from any partition (0: none yet).
  int64_t NewestTimestampMs() const;

  // As a StreamPosition's topic and partitions (other fields untouched).
  void ToProto(std::string_view topic, proto::Manifest::StreamPosition* out) const;
  // The serialized form carried by CLOCK / CUT (Header.stream_state).
  std::string Serialize(std::string_view topic) const;
  // Merges the partitions of `position` into this (a later entry for the same
  // partition replaces an earlier one).
  void MergeFrom(const proto::Manifest::StreamPosition& position);
  // Parses Serialize()'s output. DataLoss on garbage.
  static StatusOr<proto::Manifest::StreamPosition> Parse(std::string_view bytes);

 private:
  std::map<int32_t, Entry> entries_;
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_DATA_STREAM_POSITION_H_
