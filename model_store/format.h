// The on-disk model format's shared vocabulary (docs/model_format.md): the
// format version, a sparse shard and a dense slice as held in memory, and the
// writer and reader options several units take.
// Thread-safety: plain values.
#ifndef EDDY_MODEL_STORE_FORMAT_H_
#define EDDY_MODEL_STORE_FORMAT_H_

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "common/proto/model.pb.h"

namespace eddy::model_store {

// Format version written into manifests and data file headers. Readers refuse
// anything newer.
inline constexpr uint32_t kModelFormatVersion = 1;

using Encoding = proto::Manifest::ValueEncoding;
using TableSchema = proto::Manifest::TableSchema;
using FileEntry = proto::Manifest::FileEntry;
using StreamPosition = proto::Manifest::StreamPosition;

// Rows of one sparse table held by one server. Keys are unique within a shard.
struct SparseShard {
  std::string table;
  uint32_t shard = 0;         // server id
  uint32_t dim = 0;           // floats per key
  uint32_t state_floats = 0;  // optimizer state floats per key
  std::vector<uint64_t> keys;
  std::vector<float> values;         // keys.size() * dim, row-major
  std::vector<float> state;          // keys.size() * state_floats, or empty (no state)
  std::vector<uint64_t> tombstones;  // keys deleted since the parent (deltas only)
};

// The contiguous part [offset, offset + values.size()) of a dense tensor held by
// one server.
struct DenseSlice {
  std::string table;
  uint32_t shard = 0;
  uint64_t offset = 0;        // first element of the tensor held here
  uint32_t state_floats = 0;  // optimizer state floats per value
  std::vector<float> values;
  std::vector<float> state;  // values.size() * state_floats, or empty (no state)
};

struct WriterOptions {
  // fsync every file and directory (turn off only where durability is moot).
  bool sync = true;
  // Test hook: once this many bytes (over all files of the version, manifest
  // included) have been written, writes fail as a full disk would (ENOSPC).
  uint64_t fail_after_bytes = std::numeric_limits<uint64_t>::max();
};

struct ReadOptions {
  // Check the file's CRC32C against the manifest while decoding. Header and
  // bounds are validated either way.
  bool verify_checksum = true;
};

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_FORMAT_H_
