// MappedSparseFile: one sparse data file of a committed version, mapped
// read-only and used in place (docs/model_format.md: every section is aligned,
// so its arrays are read where they lie), for bulk loading without a decoded
// copy of the file. Values of any encoding are decoded a range of rows at a
// time; the whole-file CRC32C is computed in pieces (on several threads if the
// caller wants) and checked once every piece is done.
// Thread-safety: after Open, const members may run concurrently. A mapped file
// must not be truncated while mapped (committed versions are never modified;
// deleting one leaves the mapping valid).
#ifndef EDDY_MODEL_STORE_MAPPED_SHARD_FILE_H_
#define EDDY_MODEL_STORE_MAPPED_SHARD_FILE_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "model_store/format.h"
#include "model_store/version_reader.h"

namespace eddy::model_store {

class MappedSparseFile {
 public:
  // Bytes of file covered by one CRC piece (the last piece may be shorter).
  static constexpr uint64_t kCrcPieceBytes = uint64_t{8} << 20;

  // Maps `entry` (a file of a sparse table of `reader`'s version) and checks its
  // size, header and padding against the manifest entry and the table schema.
  // The checksum is not checked here (see CrcOfPiece, CheckCrc): values read
  // before CheckCrc succeeds may be corrupt. Errors: InvalidArgument (unknown or
  // dense table, unsafe path), DataLoss naming the file, I/O errors.
  static StatusOr<MappedSparseFile> Open(const VersionReader& reader, const FileEntry& entry);

  MappedSparseFile(MappedSparseFile&& other) noexcept;
  MappedSparseFile& operator=(MappedSparseFile&& other) noexcept;
  MappedSparseFile(const MappedSparseFile&) = delete;
  MappedSparseFile& operator=(const MappedSparseFile&) = delete;
  ~MappedSparseFile();

  const std::string& path() const { return path_; }
  uint64_t bytes() const { return size_; }
  uint64_t rows() const { return rows_; }
  uint32_t dim() const { return dim_; }
  uint32_t state_floats() const { return state_floats_; }
  Encoding encoding() const { return encoding_; }

  // All keys (rows()) and tombstones of the file.
  std::span<const uint64_t> keys() const { return {keys_, rows_}; }
  std::span<const uint64_t> tombstones() const { return {tombstones_, num_tombstones_}; }
  // Optimizer state of rows [begin, end) (state_floats() per row; empty when
  // the file has none). Requires begin <= end <= rows().
  std::span<const float> state(uint64_t begin, uint64_t end) const;
  // Values of rows [begin, end) (dim() floats per row) as float: in place for
  // float32, else decoded into *scratch (resized). Requires begin <= end <=
  // rows(). DataLoss naming the file for an invalid int8 scale.
  StatusOr<std::span<const float>> Values(uint64_t begin, uint64_t end,
                                          std::vector<float>* scratch) const;

  // The CRC32C of piece i, bytes [i * kCrcPieceBytes, (i + 1) * kCrcPieceBytes)
  // of the file (clipped to its size), for i < num_crc_pieces().
  size_t num_crc_pieces() const;
  uint32_t CrcOfPiece(size_t i) const;
  // OK when the CRCs of every piece, in order, combine to the manifest's; else
  // DataLoss naming the file.
  Status CheckCrc(std::span<const uint32_t> piece_crcs) const;

 private:
  MappedSparseFile() = default;
  void Unmap();

  std::string path_;
  const std::byte* base_ = nullptr;  // the mapping, size_ bytes
  uint64_t size_ = 0;
  uint32_t expected_crc_ = 0;
  uint64_t rows_ = 0;
  uint32_t dim_ = 0;
  uint32_t state_floats_ = 0;
  Encoding encoding_ = proto::Manifest::ENCODING_FLOAT32;
  const uint64_t* keys_ = nullptr;
  const std::byte* values_ = nullptr;  // float32, float16 or int8 codes
  const float* scales_ = nullptr;      // int8 only
  const float* state_ = nullptr;
  const uint64_t* tombstones_ = nullptr;
  uint64_t num_tombstones_ = 0;
};

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_MAPPED_SHARD_FILE_H_
