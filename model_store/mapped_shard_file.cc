#include "model_store/mapped_shard_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <utility>

#include "model_store/crc32c.h"
#include "model_store/internal/data_file.h"
#include "model_store/internal/encoding.h"
#include "model_store/internal/file_io.h"
#include "model_store/internal/manifest.h"

namespace eddy::model_store {

using internal::DataHeader;
using internal::IoError;
using internal::JoinPath;
using internal::kHeaderBytes;
using internal::UniqueFd;
using proto::Manifest;

namespace {

bool AllZero(const std::byte* p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    if (p[i] != std::byte{0}) return false;
  }
  return true;
}

}  // namespace

StatusOr<MappedSparseFile> MappedSparseFile::Open(const VersionReader& reader,
                                                  const FileEntry& entry) {
  const TableSchema* schema = reader.FindTable(entry.table());
  if (schema == nullptr) {
    return InvalidArgumentError("version " + std::to_string(reader.version()) + " has no table '" +
                                entry.table() + "'");
  }
  if (schema->dense()) return InvalidArgumentError("table '" + entry.table() + "' is dense");
  if (!internal::SafeRelativePath(entry.path())) {
    return InvalidArgumentError("file path '" + entry.path() + "' is not relative");
  }
  MappedSparseFile f;
  f.path_ = JoinPath(reader.dir(), entry.path());
  const std::string& path = f.path_;
  auto bad = [&](const std::string& what) {
    return DataLossError("model file " + path + ": " + what);
  };
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ENOENT) return DataLossError("model file " + path + " is missing");
    return IoError(errno, "open", path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return IoError(errno, "stat", path);
  if (!S_ISREG(st.st_mode)) return bad("is not a regular file");
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size != entry.bytes()) {
    return bad("has " + std::to_string(size) + " bytes, the manifest says " +
               std::to_string(entry.bytes()));
  }
  if (size < kHeaderBytes) return bad("is shorter than a header");
  // MAP_POPULATE: the page tables are filled in one go (and a cold file is read
  // ahead) instead of one page fault per page while importing.
  void* m = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd.get(), 0);
  if (m == MAP_FAILED) return IoError(errno, "mmap", path);
  f.base_ = static_cast<const std::byte*>(m);
  f.size_ = size;  // from here on the destructor unmaps
  f.expected_crc_ = entry.crc32c();

  std::array<std::byte, kHeaderBytes> raw;
  std::memcpy(raw.data(), f.base_, kHeaderBytes);
  ASSIGN_OR_RETURN(const DataHeader h, internal::DecodeHeader(raw, path));
  RETURN_IF_ERROR(internal::CheckDataHeader(h, path, size, entry, *schema));
  // Sizes are known not to overflow and to add up to the file size.
  const internal::Sections s = *internal::ComputeSections(h);
  f.rows_ = h.rows;
  f.dim_ = h.dim;
  f.state_floats_ = h.state_floats;
  f.encoding_ = static_cast<Encoding>(h.encoding);
  f.num_tombstones_ = h.tombstones;
  uint64_t at = kHeaderBytes;
  f.keys_ = reinterpret_cast<const uint64_t*>(f.base_ + at);
  at += s.keys;
  const uint64_t n_values = h.rows * h.dim;
  auto check_padding = [&](uint64_t section_start, uint64_t used, uint64_t padded) -> Status {
    if (!AllZero(f.base_ + section_start + used, padded - used)) {
      return bad("non-zero padding at offset " + std::to_string(section_start + used));
    }
    return OkStatus();
  };
  if (f.encoding_ == Manifest::ENCODING_INT8_ROW_SCALE) {
    f.scales_ = reinterpret_cast<const float*>(f.base_ + at);
    RETURN_IF_ERROR(check_padding(at, h.rows * 4, s.scales));
    at += s.scales;
  }
  f.values_ = f.base_ + at;
  const uint64_t value_bytes = f.encoding_ == Manifest::ENCODING_FLOAT32   ? n_values * 4
                               : f.encoding_ == Manifest::ENCODING_FLOAT16 ? n_values * 2
                                                                           : n_values;
  RETURN_IF_ERROR(check_padding(at, value_bytes, s.values));
  at += s.values;
  f.state_ = reinterpret_cast<const float*>(f.base_ + at);
  RETURN_IF_ERROR(check_padding(at, h.rows * h.state_floats * 4, s.state));
  at += s.state;
  f.tombstones_ = reinterpret_cast<const uint64_t*>(f.base_ + at);
  return f;
}

MappedSparseFile::MappedSparseFile(MappedSparseFile&& other) noexcept { *this = std::move(other); }

MappedSparseFile& MappedSparseFile::operator=(MappedSparseFile&& other) noexcept {
  if (this != &other) {
    Unmap();
    path_ = std::move(other.path_);
    base_ = std::exchange(other.base_, nullptr);
    size_ = std::exchange(other.size_, 0);
    expected_crc_ = other.expected_crc_;
    rows_ = other.rows_;
    dim_ = other.dim_;
    state_floats_ = other.state_floats_;
    encoding_ = other.encoding_;
    keys_ = other.keys_;
    values_ = other.values_;
    scales_ = other.scales_;
    state_ = other.state_;
    tombstones_ = other.tombstones_;
    num_tombstones_ = other.num_tombstones_;
  }
  return *this;
}

MappedSparseFile::~MappedSparseFile() { Unmap(); }

void MappedSparseFile::Unmap() {
  if (base_ != nullptr) ::munmap(const_cast<std::byte*>(base_), size_);
  base_ = nullptr;
  size_ = 0;
}

std::span<const float> MappedSparseFile::state(uint64_t begin, uint64_t end) const {
  if (state_floats_ == 0) return {};
  return {state_ + begin * state_floats_, (end - begin) * state_floats_};
}

StatusOr<std::span<const float>> MappedSparseFile::Values(uint64_t begin, uint64_t end,
                                                          std::vector<float>* scratch) const {
  const uint64_t first = begin * dim_, count = (end - begin) * dim_;
  switch (encoding_) {
    case Manifest::ENCODING_FLOAT32:
      return std::span<const float>(reinterpret_cast<const float*>(values_) + first, count);
    case Manifest::ENCODING_FLOAT16: {
      scratch->resize(count);
      const auto* half = reinterpret_cast<const uint16_t*>(values_) + first;
      float* out = scratch->data();
      for (uint64_t i = 0; i < count; ++i) out[i] = internal::HalfToFloat(half[i]);
      return std::span<const float>(*scratch);
    }
    case Manifest::ENCODING_INT8_ROW_SCALE: {
      scratch->resize(count);
      const auto* codes = reinterpret_cast<const int8_t*>(values_) + first;
      float* out = scratch->data();
      for (uint64_t r = begin; r < end; ++r) {
        const float scale = scales_[r];
        if (!std::isfinite(scale) || scale < 0) {
          return DataLossError("model file " + path_ + ": invalid int8 scale in row " +
                               std::to_string(r));
        }
        for (uint32_t j = 0; j < dim_; ++j) *out++ = static_cast<float>(*codes++) * scale;
      }
      return std::span<const float>(*scratch);
    }
    default:
      return DataLossError("model file " + path_ + ": unknown encoding");
  }
}

size_t MappedSparseFile::num_crc_pieces() const {
  return static_cast<size_t>((size_ + kCrcPieceBytes - 1) / kCrcPieceBytes);
}

uint32_t MappedSparseFile::CrcOfPiece(size_t i) const {
  const uint64_t begin = i * kCrcPieceBytes, end = std::min(size_, begin + kCrcPieceBytes);
  return Crc32c(std::span(base_ + begin, end - begin));
}

Status MappedSparseFile::CheckCrc(std::span<const uint32_t> piece_crcs) const {
  if (piece_crcs.size() != num_crc_pieces()) {
    return InternalError("model file " + path_ + ": " + std::to_string(piece_crcs.size()) +
                         " CRC pieces for " + std::to_string(num_crc_pieces()));
  }
  uint32_t crc = 0;
  for (size_t i = 0; i < piece_crcs.size(); ++i) {
    const uint64_t begin = i * kCrcPieceBytes, end = std::min(size_, begin + kCrcPieceBytes);
    crc = Crc32cCombine(crc, piece_crcs[i], end - begin);
  }
  if (crc != expected_crc_)
    return DataLossError("model file " + path_ + " is corrupt: CRC32C mismatch");
  return OkStatus();
}

}  // namespace eddy::model_store
