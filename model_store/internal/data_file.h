// Internal to model_store: the data file layout of format version 1
// (docs/model_format.md, "Data files"): limits, the 64-byte header and the
// section sizes; writing one data file from a shard's content and decoding one
// against its manifest entry (both implemented in shard_file.cc).
// Thread-safety: pure functions; files are written and read by one caller.
#ifndef EDDY_MODEL_STORE_INTERNAL_DATA_FILE_H_
#define EDDY_MODEL_STORE_INTERNAL_DATA_FILE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "model_store/format.h"
#include "model_store/internal/file_io.h"
#include "model_store/shard_file.h"

namespace eddy::model_store::internal {

inline constexpr char kMagic[8] = {'E', 'D', 'D', 'Y', 'S', 'H', 'R', 'D'};
inline constexpr size_t kHeaderBytes = 64;
inline constexpr size_t kHeaderCrcOffset = 60;
inline constexpr uint8_t kLayoutSparse = 1;
inline constexpr uint8_t kLayoutDense = 2;
inline constexpr uint32_t kMaxDim = 1u << 20;
// Optimizer state per sparse key or dense element: Adam keeps 2 * dim + 1 floats
// per key, a row head's optimizer adds its own.
inline constexpr uint32_t kMaxStateFloats = 2 * kMaxDim + 64;
inline constexpr uint64_t kMaxDenseElements = 1ull << 40;

struct DataHeader {
  uint32_t format_version = kModelFormatVersion;
  uint8_t layout = 0;
  uint8_t encoding = 0;
  uint32_t shard = 0;
  uint32_t dim = 0;
  uint32_t state_floats = 0;
  uint64_t rows = 0;
  uint64_t tombstones = 0;
  uint64_t offset = 0;
};

// The header bytes, checksum included.
std::array<std::byte, kHeaderBytes> EncodeHeader(const DataHeader& h);

// Checks magic, checksum, version, reserved bytes and ranges. DataLoss naming
// `path`; FailedPrecondition for a newer format version.
StatusOr<DataHeader> DecodeHeader(const std::array<std::byte, kHeaderBytes>& b,
                                  const std::string& path);

// Byte sizes of the sections that follow the header, each padded to 8.
struct Sections {
  uint64_t keys = 0;
  uint64_t scales = 0;  // int8 encoding only
  uint64_t values = 0;
  uint64_t state = 0;
  uint64_t tombstones = 0;
  uint64_t total = 0;  // header included
};

// nullopt if any size overflows 64 bits.
std::optional<Sections> ComputeSections(const DataHeader& h);

// What one data file holds: a sparse shard or a dense slice, viewed. Spans
// point into the shard or slice, which must outlive the view.
struct ShardContent {
  std::string_view table;
  uint32_t shard = 0;
  bool dense = false;
  uint32_t dim = 1;     // sparse: floats per key; dense: 1
  uint64_t offset = 0;  // dense: first element of the tensor held here
  uint32_t state_floats = 0;
  std::span<const uint64_t> keys;  // sparse only
  std::span<const float> values;
  std::span<const float> state;
  std::span<const uint64_t> tombstones;  // sparse only
};
ShardContent ContentOf(const SparseShard& shard);
ShardContent ContentOf(const DenseSlice& slice);

// Validates `content` and writes its data file into `dir` (sparse values in
// `encoding`, dense ones in float32; no optimizer state when `serving`;
// tombstones only when `delta`). `claim`, if set, runs after validation and
// before the file is created; its error is returned as is. Errors:
// InvalidArgument (sizes, values the encoding cannot hold), I/O errors.
StatusOr<WrittenShardFile> WriteShardInto(const std::string& dir, const ShardContent& content,
                                          Encoding encoding, bool serving, bool delta,
                                          ByteBudget* budget, bool sync,
                                          const std::function<Status()>& claim);

// Checks a decoded header against the file's size, its manifest entry and its
// table's schema: DataLoss naming `path` when they disagree.
Status CheckDataHeader(const DataHeader& h, const std::string& path, uint64_t file_size,
                       const FileEntry& entry, const TableSchema& schema);

// A decoded data file.
struct DecodedFile {
  DataHeader header;
  std::vector<uint64_t> keys;
  std::vector<float> values;
  std::vector<float> state;
  std::vector<uint64_t> tombstones;
};

// Reads `<dir>/<entry.path()>` and checks it against `entry` and `schema`:
// DataLoss naming the file when it disagrees, is truncated or is corrupt.
StatusOr<DecodedFile> ReadDataFile(const std::string& dir, const FileEntry& entry,
                                   const TableSchema& schema, const ReadOptions& options);

}  // namespace eddy::model_store::internal

#endif  // EDDY_MODEL_STORE_INTERNAL_DATA_FILE_H_
