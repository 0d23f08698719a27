#include "model_store/model_format.h"

#include <fcntl.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <set>
#include <thread>
#include <type_traits>
#include <utility>

#include "common/mutex.h"
#include "model_store/crc32c.h"

namespace eddy::model_store {

static_assert(std::endian::native == std::endian::little,
              "model files are little-endian and written from memory as is");

namespace {

namespace fs = std::filesystem;
using proto::Manifest;

// ---------------------------------------------------------------------------
// Constants of format version 1 (docs/model_format.md).

constexpr char kMagic[8] = {'E', 'D', 'D', 'Y', 'S', 'H', 'R', 'D'};
constexpr size_t kHeaderBytes = 64;
constexpr size_t kHeaderCrcOffset = 60;
constexpr uint8_t kLayoutSparse = 1;
constexpr uint8_t kLayoutDense = 2;
constexpr char kManifestName[] = "manifest.pb";
constexpr uint64_t kMaxManifestBytes = 64ull << 20;
constexpr uint32_t kMaxDim = 1u << 20;
constexpr uint32_t kMaxStateFloats = 64;
constexpr uint64_t kMaxDenseElements = 1ull << 40;
constexpr float kHalfOverflow = 65520.0f;  // the smallest magnitude that rounds to inf
constexpr size_t kIoChunk = 1 << 20;

// ---------------------------------------------------------------------------
// Errors.

std::string ErrnoText(int err) {
  char buf[256];
  auto r = strerror_r(err, buf, sizeof(buf));
  if constexpr (std::is_same_v<decltype(r), char*>) {
    return r;
  } else {
    return r == 0 ? std::string(buf) : "errno " + std::to_string(err);
  }
}

Status AlreadyExistsError(std::string m) { return {StatusCode::kAlreadyExists, std::move(m)}; }

// "<op> <path>: <strerror>" with a code that says what the caller can do.
Status IoError(int err, std::string_view op, const std::string& path) {
  std::string msg = std::string(op) + " " + path + ": " + ErrnoText(err);
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case ENOMEM:
    case EMFILE:
    case ENFILE:
      return ResourceExhaustedError(std::move(msg));
    case EACCES:
    case EPERM:
    case EROFS:
      return FailedPreconditionError(std::move(msg));
    case ENOENT:
    case ENOTDIR:
      return NotFoundError(std::move(msg));
    case EEXIST:
    case ENOTEMPTY:
      return AlreadyExistsError(std::move(msg));
    case EIO:
      return DataLossError(std::move(msg));
    default:
      return UnavailableError(std::move(msg));
  }
}

Status IoError(const std::error_code& ec, std::string_view op, const std::string& path) {
  return IoError(ec.value(), op, path);
}

bool CheckedMul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
bool CheckedAdd(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}
uint64_t Pad8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

std::string JoinPath(const std::string& dir, std::string_view name) {
  if (dir.empty() || dir.back() == '/') return dir + std::string(name);
  return dir + "/" + std::string(name);
}

std::string EncodingName(int e) {
  switch (e) {
    case Manifest::ENCODING_FLOAT32:
      return "float32";
    case Manifest::ENCODING_FLOAT16:
      return "float16";
    case Manifest::ENCODING_INT8_ROW_SCALE:
      return "int8_row_scale";
    default:
      return "encoding " + std::to_string(e);
  }
}

bool ValidEncoding(int e) {
  return e == Manifest::ENCODING_FLOAT32 || e == Manifest::ENCODING_FLOAT16 ||
         e == Manifest::ENCODING_INT8_ROW_SCALE;
}

// ---------------------------------------------------------------------------
// File descriptors, byte budget, buffered writer and checked reader.

class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      Reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }
  int get() const { return fd_; }
  int Release() { return std::exchange(fd_, -1); }
  void Reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

Status SyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return IoError(errno, "open directory", dir);
  if (::fsync(fd.get()) != 0) return IoError(errno, "fsync directory", dir);
  return OkStatus();
}

// An exclusive flock(2) on a root directory, held until destruction. Pin,
// unpin, delete, retention and the commit of a delta take it, so that none of
// them acts on a decision another process has invalidated.
class RootLock {
 public:
  static StatusOr<RootLock> Acquire(const std::string& root) {
    UniqueFd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd.get() < 0) {
      if (errno == ENOENT) return NotFoundError("model root " + root + " does not exist");
      return IoError(errno, "open directory", root);
    }
    while (::flock(fd.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return IoError(errno, "lock", root);
    }
    return RootLock(std::move(fd));
  }

 private:
  explicit RootLock(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;  // closing it releases the lock
};

// Bytes a writer may still write (WriterOptions::fail_after_bytes). Thread-safe.
class ByteBudget {
 public:
  explicit ByteBudget(uint64_t limit) : left_(limit) {}
  // Takes up to n bytes of the budget; returns how many were granted.
  uint64_t Take(uint64_t n) {
    uint64_t cur = left_.load(std::memory_order_relaxed);
    while (true) {
      const uint64_t take = std::min(cur, n);
      if (left_.compare_exchange_weak(cur, cur - take, std::memory_order_relaxed)) return take;
    }
  }

 private:
  std::atomic<uint64_t> left_;
};

// Buffered append-only file that tracks size and CRC32C. Not thread-safe.
class FileSink {
 public:
  FileSink(std::string path, ByteBudget* budget, bool sync)
      : path_(std::move(path)), budget_(budget), sync_(sync) {
    buf_.reserve(kIoChunk);
  }

  Status Open() {
    fd_ = UniqueFd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd_.get() < 0) return IoError(errno, "create", path_);
    return OkStatus();
  }

  Status Append(const void* data, size_t n) {
    const auto* p = static_cast<const std::byte*>(data);
    crc_ = Crc32cExtend(crc_, std::span(p, n));
    bytes_ += n;
    while (n > 0) {
      const size_t take = std::min(n, kIoChunk - buf_.size());
      buf_.insert(buf_.end(), p, p + take);
      p += take;
      n -= take;
      if (buf_.size() == kIoChunk) RETURN_IF_ERROR(Flush());
    }
    return OkStatus();
  }

  template <typename T>
  Status AppendArray(std::span<const T> a) {
    return Append(a.data(), a.size_bytes());
  }

  // Zero bytes up to the next multiple of 8.
  Status PadTo8() {
    static constexpr std::byte kZeros[8] = {};
    return Append(kZeros, Pad8(bytes_) - bytes_);
  }

  // Flushes, fsyncs (if asked) and closes.
  Status Close() {
    RETURN_IF_ERROR(Flush());
    if (sync_ && ::fsync(fd_.get()) != 0) return IoError(errno, "fsync", path_);
    if (::close(fd_.Release()) != 0) return IoError(errno, "close", path_);
    return OkStatus();
  }

  uint64_t bytes() const { return bytes_; }
  uint32_t crc() const { return crc_; }

 private:
  Status Flush() {
    const std::byte* p = buf_.data();
    size_t left = buf_.size();
    while (left > 0) {
      // The budget is unlimited unless a test asked for a simulated full disk.
      const size_t granted = static_cast<size_t>(budget_->Take(left));
      if (granted == 0) {
        return ResourceExhaustedError("write " + path_ + ": " + ErrnoText(ENOSPC) +
                                      " (simulated by WriterOptions::fail_after_bytes)");
      }
      size_t todo = granted;
      while (todo > 0) {
        const ssize_t w = ::write(fd_.get(), p, todo);
        if (w < 0) {
          if (errno == EINTR) continue;
          return IoError(errno, "write", path_);
        }
        p += w;
        todo -= static_cast<size_t>(w);
      }
      left -= granted;
    }
    buf_.clear();
    return OkStatus();
  }

  std::string path_;
  ByteBudget* budget_;  // not owned; outlives the sink
  bool sync_;
  UniqueFd fd_;
  std::vector<std::byte> buf_;
  uint64_t bytes_ = 0;
  uint32_t crc_ = 0;
};

// Sequential reader that tracks the CRC32C of what it read; reading past the
// end is DataLoss. Not thread-safe.
class FileSource {
 public:
  // Opens `path`; a missing file is DataLoss when `must_exist` (the manifest
  // lists it), NotFound otherwise.
  static StatusOr<FileSource> Open(const std::string& path, bool must_exist) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
      const int err = errno;
      if (must_exist && err == ENOENT) {
        return DataLossError("model file " + path + " is missing");
      }
      return IoError(err, "open", path);
    }
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return IoError(errno, "stat", path);
    if (!S_ISREG(st.st_mode)) return DataLossError("model file " + path + " is not a regular file");
    return FileSource(path, std::move(fd), static_cast<uint64_t>(st.st_size));
  }

  uint64_t size() const { return size_; }
  uint64_t pos() const { return pos_; }
  uint32_t crc() const { return crc_; }
  const std::string& path() const { return path_; }

  Status Read(void* dst, uint64_t n) {
    auto* p = static_cast<std::byte*>(dst);
    if (n > size_ - pos_) {
      return DataLossError("model file " + path_ + " is truncated: needs " + std::to_string(n) +
                           " bytes at offset " + std::to_string(pos_) + ", file has " +
                           std::to_string(size_));
    }
    uint64_t left = n;
    while (left > 0) {
      const ssize_t r = ::read(fd_.get(), p, std::min<uint64_t>(left, kIoChunk));
      if (r < 0) {
        if (errno == EINTR) continue;
        return IoError(errno, "read", path_);
      }
      if (r == 0) {
        return DataLossError("model file " + path_ + " shrank while being read (offset " +
                             std::to_string(pos_) + ")");
      }
      crc_ = Crc32cExtend(crc_, std::span(p, static_cast<size_t>(r)));
      p += r;
      left -= static_cast<uint64_t>(r);
      pos_ += static_cast<uint64_t>(r);
    }
    return OkStatus();
  }

  template <typename T>
  Status ReadArray(uint64_t count, std::vector<T>* out) {
    out->resize(count);  // callers bound count by the file size first
    return Read(out->data(), count * sizeof(T));
  }

  // Reads the zero padding up to the next multiple of 8.
  Status SkipPadding() {
    std::array<std::byte, 8> pad{};
    const uint64_t n = Pad8(pos_) - pos_;
    RETURN_IF_ERROR(Read(pad.data(), n));
    for (uint64_t i = 0; i < n; ++i) {
      if (pad[i] != std::byte{0}) {
        return DataLossError("model file " + path_ + ": non-zero padding at offset " +
                             std::to_string(pos_ - n + i));
      }
    }
    return OkStatus();
  }

 private:
  FileSource(std::string path, UniqueFd fd, uint64_t size)
      : path_(std::move(path)), fd_(std::move(fd)), size_(size) {}
  std::string path_;
  UniqueFd fd_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint32_t crc_ = 0;
};

// ---------------------------------------------------------------------------
// Data file header and section sizes.

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

template <typename T>
void Put(std::array<std::byte, kHeaderBytes>* b, size_t at, T v) {
  std::memcpy(b->data() + at, &v, sizeof(T));
}
template <typename T>
T Get(const std::array<std::byte, kHeaderBytes>& b, size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof(T));
  return v;
}

std::array<std::byte, kHeaderBytes> EncodeHeader(const DataHeader& h) {
  std::array<std::byte, kHeaderBytes> b{};
  std::memcpy(b.data(), kMagic, sizeof(kMagic));
  Put<uint32_t>(&b, 8, h.format_version);
  Put<uint8_t>(&b, 12, h.layout);
  Put<uint8_t>(&b, 13, h.encoding);
  Put<uint32_t>(&b, 16, h.shard);
  Put<uint32_t>(&b, 20, h.dim);
  Put<uint32_t>(&b, 24, h.state_floats);
  Put<uint64_t>(&b, 32, h.rows);
  Put<uint64_t>(&b, 40, h.tombstones);
  Put<uint64_t>(&b, 48, h.offset);
  Put<uint32_t>(&b, kHeaderCrcOffset, Crc32c(std::span(b.data(), kHeaderCrcOffset)));
  return b;
}

StatusOr<DataHeader> DecodeHeader(const std::array<std::byte, kHeaderBytes>& b,
                                  const std::string& path) {
  auto bad = [&](const std::string& what) {
    return DataLossError("model file " + path + ": " + what);
  };
  if (std::memcmp(b.data(), kMagic, sizeof(kMagic)) != 0) {
    return bad("bad magic (not an EDDYSHRD file)");
  }
  const uint32_t crc = Get<uint32_t>(b, kHeaderCrcOffset);
  if (crc != Crc32c(std::span(b.data(), kHeaderCrcOffset))) return bad("header checksum mismatch");
  DataHeader h;
  h.format_version = Get<uint32_t>(b, 8);
  if (h.format_version > kModelFormatVersion) {
    return FailedPreconditionError(
        "model file " + path + " has format version " + std::to_string(h.format_version) +
        ", newer than this reader supports (" + std::to_string(kModelFormatVersion) + ")");
  }
  if (h.format_version == 0) return bad("format version 0");
  h.layout = Get<uint8_t>(b, 12);
  h.encoding = Get<uint8_t>(b, 13);
  h.shard = Get<uint32_t>(b, 16);
  h.dim = Get<uint32_t>(b, 20);
  h.state_floats = Get<uint32_t>(b, 24);
  h.rows = Get<uint64_t>(b, 32);
  h.tombstones = Get<uint64_t>(b, 40);
  h.offset = Get<uint64_t>(b, 48);
  if (Get<uint16_t>(b, 14) != 0 || Get<uint32_t>(b, 28) != 0 || Get<uint32_t>(b, 56) != 0) {
    return bad("reserved header bytes are not zero");
  }
  if (h.layout != kLayoutSparse && h.layout != kLayoutDense) {
    return bad("unknown layout " + std::to_string(h.layout));
  }
  if (!ValidEncoding(h.encoding)) return bad("unknown " + EncodingName(h.encoding));
  if (h.state_floats > kMaxStateFloats) {
    return bad("state_floats " + std::to_string(h.state_floats) + " is out of range");
  }
  if (h.layout == kLayoutSparse) {
    if (h.dim == 0 || h.dim > kMaxDim) return bad("dim " + std::to_string(h.dim) + " is invalid");
    if (h.offset != 0) return bad("sparse file with a dense offset");
  } else {
    if (h.dim != 1) return bad("dense file with dim " + std::to_string(h.dim) + " (must be 1)");
    if (h.tombstones != 0) return bad("dense file with tombstones");
    if (h.encoding != Manifest::ENCODING_FLOAT32) return bad("dense file not in float32");
  }
  return h;
}

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
std::optional<Sections> ComputeSections(const DataHeader& h) {
  Sections s;
  uint64_t n_values = 0, n_state = 0, t = 0;
  const bool sparse = h.layout == kLayoutSparse;
  if (!CheckedMul(h.rows, sparse ? h.dim : 1, &n_values)) return std::nullopt;
  if (!CheckedMul(h.rows, h.state_floats, &n_state)) return std::nullopt;
  const uint64_t limit = std::numeric_limits<uint64_t>::max() / 16;
  if (h.rows > limit || n_values > limit || n_state > limit || h.tombstones > limit) {
    return std::nullopt;
  }
  s.keys = sparse ? h.rows * 8 : 0;
  switch (h.encoding) {
    case Manifest::ENCODING_FLOAT32:
      s.values = Pad8(n_values * 4);
      break;
    case Manifest::ENCODING_FLOAT16:
      s.values = Pad8(n_values * 2);
      break;
    case Manifest::ENCODING_INT8_ROW_SCALE:
      s.scales = Pad8(h.rows * 4);
      s.values = Pad8(n_values);
      break;
    default:
      return std::nullopt;
  }
  s.state = Pad8(n_state * 4);
  s.tombstones = h.tombstones * 8;
  t = kHeaderBytes;
  for (uint64_t part : {s.keys, s.scales, s.values, s.state, s.tombstones}) {
    if (!CheckedAdd(t, part, &t)) return std::nullopt;
  }
  s.total = t;
  return s;
}

}  // namespace

// ---------------------------------------------------------------------------
// float16.

namespace internal {

uint16_t FloatToHalf(float f) {
  // Round to nearest even (after F. Giesen, "float_to_half_fast3_rtne").
  uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = x & 0x80000000u;
  x ^= sign;
  uint16_t o;
  constexpr uint32_t kF32Inf = 255u << 23;
  constexpr uint32_t kF16Max = (127u + 16u) << 23;  // 2^16: at or above, inf (or NaN)
  constexpr uint32_t kDenormMagic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  if (x >= kF16Max) {
    o = x > kF32Inf ? 0x7E00 : 0x7C00;
  } else if (x < (113u << 23)) {  // below 2^-14: subnormal half or zero
    const float r = std::bit_cast<float>(x) + std::bit_cast<float>(kDenormMagic);
    o = static_cast<uint16_t>(std::bit_cast<uint32_t>(r) - kDenormMagic);
  } else {
    const uint32_t mant_odd = (x >> 13) & 1u;
    x += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFu;
    x += mant_odd;
    o = static_cast<uint16_t>(x >> 13);
  }
  return static_cast<uint16_t>(o | (sign >> 16));
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return std::bit_cast<float>(std::bit_cast<uint32_t>(v) | sign);
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

}  // namespace internal

namespace {

// Scale of one int8 row: the smallest float s with max|x| / s <= 127, so that
// every |x / s| <= 127 and rounding errs by at most s / 2.
float Int8RowScale(std::span<const float> row) {
  float max_abs = 0;
  for (float x : row) max_abs = std::max(max_abs, std::fabs(x));
  if (max_abs == 0) return 0;
  float scale = max_abs / 127.0f;
  if (scale == 0) scale = std::numeric_limits<float>::denorm_min();
  while (static_cast<double>(max_abs) / scale > 127.0) {
    scale = std::nextafter(scale, std::numeric_limits<float>::infinity());
  }
  return scale;
}

int8_t Int8Code(float x, float scale) {
  if (scale == 0) return 0;
  const double q = std::nearbyint(static_cast<double>(x) / scale);
  return static_cast<int8_t>(std::clamp(q, -127.0, 127.0));
}

// Values that `encoding` cannot hold: non-finite for int8, finite values beyond
// the float16 range (they would become infinities).
Status CheckEncodable(std::span<const float> values, Encoding encoding, const std::string& what) {
  if (encoding == Manifest::ENCODING_FLOAT16) {
    for (size_t i = 0; i < values.size(); ++i) {
      if (std::isfinite(values[i]) && std::fabs(values[i]) >= kHalfOverflow) {
        return InvalidArgumentError(what + ": value " + std::to_string(values[i]) + " at index " +
                                    std::to_string(i) +
                                    " is beyond the float16 range; use float32");
      }
    }
  } else if (encoding == Manifest::ENCODING_INT8_ROW_SCALE) {
    for (size_t i = 0; i < values.size(); ++i) {
      if (!std::isfinite(values[i])) {
        return InvalidArgumentError(what + ": non-finite value at index " + std::to_string(i) +
                                    " cannot be stored as int8");
      }
    }
  }
  return OkStatus();
}

// Writes `values` (rows of `dim`) in `encoding`, padded.
Status WriteValues(FileSink* out, std::span<const float> values, uint32_t dim, Encoding encoding) {
  switch (encoding) {
    case Manifest::ENCODING_FLOAT32:
      RETURN_IF_ERROR(out->AppendArray(values));
      break;
    case Manifest::ENCODING_FLOAT16: {
      std::vector<uint16_t> chunk;
      for (size_t i = 0; i < values.size(); i += kIoChunk / 2) {
        const size_t n = std::min(values.size() - i, kIoChunk / 2);
        chunk.resize(n);
        for (size_t j = 0; j < n; ++j) chunk[j] = internal::FloatToHalf(values[i + j]);
        RETURN_IF_ERROR(out->AppendArray(std::span<const uint16_t>(chunk)));
      }
      break;
    }
    case Manifest::ENCODING_INT8_ROW_SCALE: {
      const size_t rows = values.size() / dim;
      std::vector<float> scales(rows);
      for (size_t r = 0; r < rows; ++r) scales[r] = Int8RowScale(values.subspan(r * dim, dim));
      RETURN_IF_ERROR(out->AppendArray(std::span<const float>(scales)));
      RETURN_IF_ERROR(out->PadTo8());
      std::vector<int8_t> chunk;
      chunk.reserve(kIoChunk);
      for (size_t r = 0; r < rows; ++r) {
        for (size_t j = 0; j < dim; ++j) chunk.push_back(Int8Code(values[r * dim + j], scales[r]));
        if (chunk.size() >= kIoChunk - dim || r + 1 == rows) {
          RETURN_IF_ERROR(out->AppendArray(std::span<const int8_t>(chunk)));
          chunk.clear();
        }
      }
      break;
    }
    default:
      return InternalError("unknown encoding");
  }
  return out->PadTo8();
}

// Reads `count` values (rows of `dim`) stored in `encoding` and dequantizes.
Status ReadValues(FileSource* in, uint64_t count, uint64_t rows, uint32_t dim, Encoding encoding,
                  std::vector<float>* out) {
  switch (encoding) {
    case Manifest::ENCODING_FLOAT32:
      RETURN_IF_ERROR(in->ReadArray(count, out));
      break;
    case Manifest::ENCODING_FLOAT16: {
      std::vector<uint16_t> half;
      RETURN_IF_ERROR(in->ReadArray(count, &half));
      out->resize(count);
      for (uint64_t i = 0; i < count; ++i) (*out)[i] = internal::HalfToFloat(half[i]);
      break;
    }
    case Manifest::ENCODING_INT8_ROW_SCALE: {
      std::vector<float> scales;
      RETURN_IF_ERROR(in->ReadArray(rows, &scales));
      for (uint64_t r = 0; r < rows; ++r) {
        if (!std::isfinite(scales[r]) || scales[r] < 0) {
          return DataLossError("model file " + in->path() + ": invalid int8 scale in row " +
                               std::to_string(r));
        }
      }
      RETURN_IF_ERROR(in->SkipPadding());
      std::vector<int8_t> codes;
      RETURN_IF_ERROR(in->ReadArray(count, &codes));
      out->resize(count);
      for (uint64_t i = 0; i < count; ++i) {
        (*out)[i] = static_cast<float>(codes[i]) * scales[i / dim];
      }
      break;
    }
    default:
      return DataLossError("model file " + in->path() + ": unknown encoding");
  }
  return in->SkipPadding();
}

// ---------------------------------------------------------------------------
// Manifest validation, shared by the writer (InvalidArgument) and the reader
// (which turns it into DataLoss).

bool SafeRelativePath(std::string_view p) {
  if (p.empty() || p.front() == '/' || p.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    const std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

// Elements of a dense table, or 0 if its shape is invalid.
uint64_t DenseElements(const TableSchema& t) {
  if (t.shape_size() == 0) return 0;
  uint64_t n = 1;
  for (uint64_t d : t.shape()) {
    if (d == 0 || !CheckedMul(n, d, &n) || n > kMaxDenseElements) return 0;
  }
  return n;
}

Status ValidateManifest(const Manifest& m) {
  if (m.format_version() == 0) return InvalidArgumentError("format_version is missing");
  if (m.format_version() > kModelFormatVersion) {
    return FailedPreconditionError("format_version " + std::to_string(m.format_version()) +
                                   " is newer than this reader supports (" +
                                   std::to_string(kModelFormatVersion) + "); upgrade the reader");
  }
  const std::string v = "version " + std::to_string(m.version());
  if (m.version() == 0) return InvalidArgumentError("version is 0");
  if (m.kind() == Manifest::KIND_FULL) {
    if (m.parent_version() != 0) return InvalidArgumentError(v + ": a full version has a parent");
    if (m.base_version() != m.version()) {
      return InvalidArgumentError(v + ": a full version's base_version must be itself");
    }
  } else if (m.kind() == Manifest::KIND_DELTA) {
    if (m.parent_version() == 0 || m.parent_version() >= m.version()) {
      return InvalidArgumentError(v + ": a delta's parent_version " +
                                  std::to_string(m.parent_version()) + " must be an older version");
    }
    if (m.base_version() == 0 || m.base_version() > m.parent_version()) {
      return InvalidArgumentError(v + ": base_version " + std::to_string(m.base_version()) +
                                  " is not at or below parent_version " +
                                  std::to_string(m.parent_version()));
    }
  } else {
    return InvalidArgumentError(v + ": unknown kind " + std::to_string(m.kind()));
  }
  if (m.tables_size() == 0) return InvalidArgumentError(v + " has no tables");
  std::map<std::string, const TableSchema*> tables;
  for (const TableSchema& t : m.tables()) {
    const std::string tn = v + ": table '" + t.name() + "'";
    if (t.name().empty()) return InvalidArgumentError(v + ": a table has an empty name");
    if (!tables.emplace(t.name(), &t).second) return InvalidArgumentError(tn + " is listed twice");
    if (!ValidEncoding(t.value_encoding())) {
      return InvalidArgumentError(tn + " has no valid value_encoding");
    }
    if (t.state_floats_per_value() > kMaxStateFloats) {
      return InvalidArgumentError(tn + ": state_floats_per_value " +
                                  std::to_string(t.state_floats_per_value()) + " is too large");
    }
    if (m.serving() && t.state_floats_per_value() != 0) {
      return InvalidArgumentError(tn + ": a serving version has no optimizer state");
    }
    if (t.dense()) {
      if (DenseElements(t) == 0) return InvalidArgumentError(tn + ": invalid dense shape");
      if (t.value_encoding() != Manifest::ENCODING_FLOAT32) {
        return InvalidArgumentError(tn + ": dense tables are stored as float32");
      }
    } else {
      if (t.dim() == 0 || t.dim() > kMaxDim) {
        return InvalidArgumentError(tn + ": dim " + std::to_string(t.dim()) + " is invalid");
      }
      if (t.shape_size() != 0) return InvalidArgumentError(tn + ": a sparse table has a shape");
    }
  }
  std::set<std::string> paths;
  std::set<std::pair<std::string, uint32_t>> shards;
  // Dense slices per table: (offset, end).
  std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> slices;
  for (const FileEntry& f : m.files()) {
    const std::string fn = v + ": file '" + f.path() + "'";
    if (!SafeRelativePath(f.path())) return InvalidArgumentError(fn + " is not a relative path");
    if (f.path() == kManifestName) return InvalidArgumentError(fn + " is the manifest");
    if (!paths.insert(f.path()).second) return InvalidArgumentError(fn + " is listed twice");
    auto t = tables.find(f.table());
    if (t == tables.end()) {
      return InvalidArgumentError(fn + " belongs to unknown table '" + f.table() + "'");
    }
    if (!shards.emplace(f.table(), f.shard()).second) {
      return InvalidArgumentError(fn + ": table '" + f.table() + "' has two files for shard " +
                                  std::to_string(f.shard()));
    }
    if (f.bytes() < kHeaderBytes) return InvalidArgumentError(fn + " is shorter than a header");
    if (t->second->dense()) {
      uint64_t end = 0;
      if (f.tombstones() != 0) return InvalidArgumentError(fn + ": dense file with tombstones");
      if (!CheckedAdd(f.offset(), f.rows(), &end) || end > DenseElements(*t->second)) {
        return InvalidArgumentError(fn + ": slice [" + std::to_string(f.offset()) + ", +" +
                                    std::to_string(f.rows()) + ") is outside the tensor");
      }
      slices[f.table()].emplace_back(f.offset(), end);
    } else {
      if (f.offset() != 0) return InvalidArgumentError(fn + ": sparse file with an offset");
      if (f.tombstones() != 0 && m.kind() != Manifest::KIND_DELTA) {
        return InvalidArgumentError(fn + ": tombstones in a full version");
      }
    }
  }
  for (const auto& [name, table] : tables) {
    if (!table->dense()) continue;
    auto& s = slices[name];
    std::sort(s.begin(), s.end());
    uint64_t covered = 0;
    for (const auto& [begin, end] : s) {
      if (begin == end) continue;  // a server that holds no part of the tensor
      if (begin < covered) {
        return InvalidArgumentError(v + ": dense table '" + name + "' has overlapping slices at " +
                                    std::to_string(begin));
      }
      if (begin > covered && m.kind() == Manifest::KIND_FULL) break;
      covered = end;
    }
    if (m.kind() == Manifest::KIND_FULL && covered != DenseElements(*table)) {
      return InvalidArgumentError(v + ": dense table '" + name + "' is not fully covered (" +
                                  std::to_string(covered) + " of " +
                                  std::to_string(DenseElements(*table)) +
                                  " values from offset 0) in a full version");
    }
  }
  std::set<int32_t> workers;
  for (const StreamPosition& p : m.positions()) {
    if (!workers.insert(p.worker()).second) {
      return InvalidArgumentError(v + ": two stream positions for worker " +
                                  std::to_string(p.worker()));
    }
  }
  return OkStatus();
}

// ---------------------------------------------------------------------------
// Directory names.

std::optional<uint64_t> ParseVersionDigits(std::string_view digits) {
  if (digits.size() < 12) return std::nullopt;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
  }
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
  if (ec != std::errc() || p != digits.data() + digits.size() || v == 0) return std::nullopt;
  return v;
}

// "v000000000042" -> 42; nullopt for anything not in canonical form.
std::optional<uint64_t> ParseVersionDirName(std::string_view name) {
  if (name.empty() || name.front() != 'v') return std::nullopt;
  auto v = ParseVersionDigits(name.substr(1));
  if (!v || VersionDirName(*v) != name) return std::nullopt;
  return v;
}

constexpr std::string_view kTempTag = ".tmp-";
constexpr std::string_view kDeletingTag = ".del-";

struct TempDirName {
  uint64_t version;
  bool deleting;  // a committed version being removed by retention
};

// ".v000000000042.tmp-<hex>" / ".v000000000042.del-<hex>".
std::optional<TempDirName> ParseTempDirName(std::string_view name) {
  if (name.size() < 2 || name.substr(0, 2) != ".v") return std::nullopt;
  const size_t dot = name.find('.', 2);
  if (dot == std::string_view::npos) return std::nullopt;
  auto v = ParseVersionDigits(name.substr(2, dot - 2));
  if (!v) return std::nullopt;
  const std::string_view rest = name.substr(dot);
  if (rest.size() <= kTempTag.size()) return std::nullopt;
  if (rest.substr(0, kTempTag.size()) == kTempTag) return TempDirName{*v, false};
  if (rest.substr(0, kDeletingTag.size()) == kDeletingTag) return TempDirName{*v, true};
  return std::nullopt;
}

std::string RandomSuffix() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char buf[17];
  std::snprintf(buf, sizeof(buf), "%016llx", static_cast<unsigned long long>(rng()));
  return buf;
}

// Data file name: table name with bytes outside [A-Za-z0-9_-] as %XX, then the shard.
std::string DataFileName(std::string_view table, uint32_t shard) {
  std::string out;
  for (unsigned char c : table) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
        c == '-') {
      out += static_cast<char>(c);
    } else {
      char hex[4];
      std::snprintf(hex, sizeof(hex), "%%%02X", c);
      out += hex;
    }
  }
  char tail[32];
  std::snprintf(tail, sizeof(tail), ".s%05u.eddy", shard);
  return out + tail;
}

// Renames without replacing an existing target (a committed version is never
// overwritten). Falls back to rename(2) where renameat2 is unsupported; the
// target is then checked first.
int RenameNoReplace(const std::string& from, const std::string& to) {
#ifdef RENAME_NOREPLACE
  if (::renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(), RENAME_NOREPLACE) == 0) return 0;
  if (errno != EINVAL && errno != ENOSYS) return errno;
#endif
  struct stat st;
  if (::lstat(to.c_str(), &st) == 0) return EEXIST;
  return ::rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

StatusOr<std::string> SerializeDeterministic(const Manifest& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    if (!m.SerializeToCodedStream(&coded)) return InternalError("cannot serialize the manifest");
  }
  return out;
}

}  // namespace

std::string VersionDirName(uint64_t version) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "v%012llu", static_cast<unsigned long long>(version));
  return buf;
}

// ---------------------------------------------------------------------------
// VersionWriter.

struct WrittenFile {
  FileEntry entry;
  bool dense = false;
  uint32_t dim = 0;
  uint32_t state_floats = 0;
  Encoding encoding = Manifest::ENCODING_UNSPECIFIED;
};

struct VersionWriter::State {
  State(std::string root_, std::string temp_, uint64_t version_, uint64_t parent_, uint64_t base_,
        bool serving_, Encoding encoding_, const WriterOptions& options_)
      : root(std::move(root_)),
        temp(std::move(temp_)),
        version(version_),
        parent(parent_),
        base(base_),
        serving(serving_),
        encoding(encoding_),
        options(options_),
        budget(options_.fail_after_bytes) {}

  // Records the first failure and removes the temporary directory.
  Status Fail(Status s) {
    MutexLock l(&mu);
    if (failure.ok()) failure = s;
    RemoveTempLocked();
    return s;
  }
  void RemoveTempLocked() REQUIRES(mu) {
    if (removed || committed) return;
    removed = true;
    std::error_code ec;
    fs::remove_all(temp, ec);
    if (ec) LOG(WARNING) << "cannot remove " << temp << ": " << ec.message();
  }
  Status UsableLocked() REQUIRES(mu) {
    const std::string what = "writer of version " + std::to_string(version);
    if (committed) return FailedPreconditionError(what + " has committed");
    if (!failure.ok()) return FailedPreconditionError(what + " failed: " + failure.ToString());
    if (removed) return FailedPreconditionError(what + " was aborted");
    return OkStatus();
  }
  // Claims (table, shard) before writing its file.
  Status Claim(const std::string& table, uint32_t shard) {
    MutexLock l(&mu);
    RETURN_IF_ERROR(UsableLocked());
    if (!claimed.emplace(table, shard).second) {
      return AlreadyExistsError("version " + std::to_string(version) + ": table '" + table +
                                "' shard " + std::to_string(shard) + " was already added");
    }
    return OkStatus();
  }
  Status Record(WrittenFile f) {
    MutexLock l(&mu);
    RETURN_IF_ERROR(UsableLocked());
    files.push_back(std::move(f));
    return OkStatus();
  }

  const std::string root;
  const std::string temp;
  const uint64_t version;
  const uint64_t parent;
  const uint64_t base;
  const bool serving;
  const Encoding encoding;
  const WriterOptions options;
  ByteBudget budget;

  Mutex mu;
  std::set<std::pair<std::string, uint32_t>> claimed GUARDED_BY(mu);
  std::vector<WrittenFile> files GUARDED_BY(mu);
  Status failure GUARDED_BY(mu);
  bool committed GUARDED_BY(mu) = false;
  bool removed GUARDED_BY(mu) = false;
};

namespace {

// Writes one data file: header, then its sections. Returns its manifest entry.
StatusOr<FileEntry> WriteDataFile(const std::string& dir, const std::string& name,
                                  const DataHeader& h, std::span<const uint64_t> keys,
                                  std::span<const float> values, std::span<const float> state,
                                  std::span<const uint64_t> tombstones, ByteBudget* budget,
                                  bool sync) {
  const std::string path = JoinPath(dir, name);
  FileSink out(path, budget, sync);
  RETURN_IF_ERROR(out.Open());
  const auto header = EncodeHeader(h);
  RETURN_IF_ERROR(out.Append(header.data(), header.size()));
  RETURN_IF_ERROR(out.AppendArray(keys));
  RETURN_IF_ERROR(WriteValues(&out, values, h.layout == kLayoutSparse ? h.dim : 1,
                              static_cast<Encoding>(h.encoding)));
  if (h.state_floats > 0) RETURN_IF_ERROR(out.AppendArray(state));
  RETURN_IF_ERROR(out.PadTo8());
  RETURN_IF_ERROR(out.AppendArray(tombstones));
  RETURN_IF_ERROR(out.Close());
  const auto sections = ComputeSections(h);
  if (!sections || sections->total != out.bytes()) {
    return InternalError("model file " + path + ": wrote " + std::to_string(out.bytes()) +
                         " bytes, layout says otherwise");
  }
  FileEntry e;
  e.set_path(name);
  e.set_shard(h.shard);
  e.set_rows(h.rows);
  e.set_tombstones(h.tombstones);
  e.set_bytes(out.bytes());
  e.set_crc32c(out.crc());
  e.set_offset(h.offset);
  return e;
}

// State floats per value a file gets: none in serving versions or when the
// caller passed no state for a non-empty shard; otherwise as given.
StatusOr<uint32_t> FileStateFloats(bool serving, uint64_t rows, uint32_t state_floats,
                                   size_t state_size, const std::string& what) {
  if (serving) return 0u;
  uint64_t expected = 0;
  if (state_floats > kMaxStateFloats) {
    return InvalidArgumentError(what + ": state_floats " + std::to_string(state_floats) +
                                " is too large");
  }
  if (!CheckedMul(rows, state_floats, &expected)) return InvalidArgumentError(what + ": overflow");
  if (state_size == expected) return state_floats;
  if (state_size == 0) return 0u;
  return InvalidArgumentError(what + ": " + std::to_string(state_size) +
                              " state floats, expected " + std::to_string(expected) + " or none");
}

}  // namespace

VersionWriter::VersionWriter(std::unique_ptr<State> state) : s_(std::move(state)) {}
VersionWriter::VersionWriter(VersionWriter&&) noexcept = default;
VersionWriter& VersionWriter::operator=(VersionWriter&& o) noexcept {
  if (this != &o) {
    Abort();
    s_ = std::move(o.s_);
  }
  return *this;
}
VersionWriter::~VersionWriter() { Abort(); }

StatusOr<VersionWriter> VersionWriter::Begin(std::string root_dir, uint64_t version,
                                             uint64_t parent, bool serving, Encoding encoding,
                                             const WriterOptions& options) {
  if (root_dir.empty()) return InvalidArgumentError("empty model root directory");
  if (version == 0) return InvalidArgumentError("model version must be > 0");
  if (parent >= version) {
    return InvalidArgumentError("delta version " + std::to_string(version) +
                                " must be newer than its parent " + std::to_string(parent));
  }
  if (!ValidEncoding(encoding)) {
    return InvalidArgumentError("unknown value " + EncodingName(encoding));
  }
  const std::string final_dir = JoinPath(root_dir, VersionDirName(version));
  std::error_code ec;
  fs::create_directories(root_dir, ec);
  if (ec) return IoError(ec, "create directory", root_dir);
  if (fs::exists(final_dir, ec)) {
    return AlreadyExistsError("version " + std::to_string(version) +
                              " already exists: " + final_dir);
  }
  ASSIGN_OR_RETURN(const std::vector<uint64_t> committed, ListVersions(root_dir));
  if (!committed.empty() && committed.back() > version) {
    return FailedPreconditionError("version " + std::to_string(version) +
                                   " is older than version " + std::to_string(committed.back()) +
                                   " committed under " + root_dir +
                                   "; versions are committed in increasing order");
  }
  uint64_t base = version;
  if (parent != 0) {
    const std::string parent_dir = JoinPath(root_dir, VersionDirName(parent));
    auto reader = VersionReader::Open(parent_dir);
    if (!reader.ok()) {
      if (reader.status().code() == StatusCode::kNotFound) {
        return FailedPreconditionError("parent version " + std::to_string(parent) + " of delta " +
                                       std::to_string(version) + " is not committed under " +
                                       root_dir);
      }
      return reader.status().WithContext("parent of delta " + std::to_string(version));
    }
    if (reader->manifest().serving() != serving) {
      return FailedPreconditionError(
          "delta " + std::to_string(version) + (serving ? " (serving)" : " (checkpoint)") +
          " cannot follow version " + std::to_string(parent) +
          (reader->manifest().serving() ? " (serving)" : " (checkpoint)"));
    }
    base = reader->manifest().base_version();
  }
  std::string temp;
  for (int attempt = 0;; ++attempt) {
    temp =
        JoinPath(root_dir, "." + VersionDirName(version) + std::string(kTempTag) + RandomSuffix());
    if (::mkdir(temp.c_str(), 0755) == 0) break;
    if (errno != EEXIST || attempt >= 8) return IoError(errno, "create directory", temp);
  }
  return VersionWriter(std::make_unique<State>(std::move(root_dir), std::move(temp), version,
                                               parent, base, serving, encoding, options));
}

namespace {

// Validates and writes one sparse shard's file into `dir`. Returns its entry
// (table set) and the state floats per value it holds.
StatusOr<std::pair<FileEntry, uint32_t>> WriteSparseInto(const std::string& dir,
                                                         const SparseShard& shard,
                                                         Encoding encoding, bool serving,
                                                         bool delta, ByteBudget* budget, bool sync,
                                                         const std::function<Status()>& claim) {
  const std::string what =
      "table '" + shard.table + "' shard " + std::to_string(shard.shard) + " (sparse)";
  if (shard.table.empty()) return InvalidArgumentError("sparse shard without a table name");
  if (shard.dim == 0 || shard.dim > kMaxDim) {
    return InvalidArgumentError(what + ": dim " + std::to_string(shard.dim) + " is invalid");
  }
  uint64_t n_values = 0;
  if (!CheckedMul(shard.keys.size(), shard.dim, &n_values) || shard.values.size() != n_values) {
    return InvalidArgumentError(what + ": " + std::to_string(shard.values.size()) + " values for " +
                                std::to_string(shard.keys.size()) + " keys of dim " +
                                std::to_string(shard.dim));
  }
  ASSIGN_OR_RETURN(
      const uint32_t state_floats,
      FileStateFloats(serving, shard.keys.size(), shard.state_floats, shard.state.size(), what));
  if (!shard.tombstones.empty() && !delta) {
    return InvalidArgumentError(what + ": tombstones in a full version");
  }
  RETURN_IF_ERROR(CheckEncodable(shard.values, encoding, what));
  if (claim) RETURN_IF_ERROR(claim());

  DataHeader h;
  h.layout = kLayoutSparse;
  h.encoding = static_cast<uint8_t>(encoding);
  h.shard = shard.shard;
  h.dim = shard.dim;
  h.state_floats = state_floats;
  h.rows = shard.keys.size();
  h.tombstones = shard.tombstones.size();
  ASSIGN_OR_RETURN(
      FileEntry entry,
      WriteDataFile(dir, DataFileName(shard.table, shard.shard), h, shard.keys, shard.values,
                    std::span(shard.state).first(state_floats ? h.rows * state_floats : 0),
                    shard.tombstones, budget, sync));
  entry.set_table(shard.table);
  return std::make_pair(std::move(entry), state_floats);
}

StatusOr<std::pair<FileEntry, uint32_t>> WriteDenseInto(const std::string& dir,
                                                        const DenseSlice& slice, bool serving,
                                                        ByteBudget* budget, bool sync,
                                                        const std::function<Status()>& claim) {
  const std::string what =
      "table '" + slice.table + "' shard " + std::to_string(slice.shard) + " (dense)";
  if (slice.table.empty()) return InvalidArgumentError("dense slice without a table name");
  uint64_t end = 0;
  if (!CheckedAdd(slice.offset, slice.values.size(), &end) || end > kMaxDenseElements) {
    return InvalidArgumentError(what + ": slice is out of range");
  }
  ASSIGN_OR_RETURN(
      const uint32_t state_floats,
      FileStateFloats(serving, slice.values.size(), slice.state_floats, slice.state.size(), what));
  if (claim) RETURN_IF_ERROR(claim());

  DataHeader h;
  h.layout = kLayoutDense;
  h.encoding = Manifest::ENCODING_FLOAT32;
  h.shard = slice.shard;
  h.dim = 1;
  h.state_floats = state_floats;
  h.rows = slice.values.size();
  h.offset = slice.offset;
  ASSIGN_OR_RETURN(
      FileEntry entry,
      WriteDataFile(dir, DataFileName(slice.table, slice.shard), h, {}, slice.values,
                    std::span(slice.state).first(state_floats ? h.rows * state_floats : 0), {},
                    budget, sync));
  entry.set_table(slice.table);
  return std::make_pair(std::move(entry), state_floats);
}

}  // namespace

Status VersionWriter::AddSparse(const SparseShard& shard) {
  if (!s_) return FailedPreconditionError("moved-from VersionWriter");
  bool claimed = false;
  auto written = WriteSparseInto(s_->temp, shard, s_->encoding, s_->serving, s_->parent != 0,
                                 &s_->budget, s_->options.sync, [&]() -> Status {
                                   RETURN_IF_ERROR(s_->Claim(shard.table, shard.shard));
                                   claimed = true;
                                   return OkStatus();
                                 });
  if (!written.ok()) return claimed ? s_->Fail(written.status()) : written.status();
  return s_->Record(
      WrittenFile{std::move(written->first), false, shard.dim, written->second, s_->encoding});
}

Status VersionWriter::AddDense(const DenseSlice& slice) {
  if (!s_) return FailedPreconditionError("moved-from VersionWriter");
  bool claimed = false;
  auto written =
      WriteDenseInto(s_->temp, slice, s_->serving, &s_->budget, s_->options.sync, [&]() -> Status {
        RETURN_IF_ERROR(s_->Claim(slice.table, slice.shard));
        claimed = true;
        return OkStatus();
      });
  if (!written.ok()) return claimed ? s_->Fail(written.status()) : written.status();
  return s_->Record(
      WrittenFile{std::move(written->first), true, 1, written->second, Manifest::ENCODING_FLOAT32});
}

Status VersionWriter::AddWrittenFile(const WrittenShardFile& file) {
  if (!s_) return FailedPreconditionError("moved-from VersionWriter");
  const FileEntry& e = file.entry;
  const std::string what = "version " + std::to_string(s_->version) + ": file " + e.path() +
                           " of table '" + e.table() + "' shard " + std::to_string(e.shard());
  if (!SafeRelativePath(e.path()) || e.path() != DataFileName(e.table(), e.shard())) {
    return InvalidArgumentError(what + ": not a data file name of this table and shard");
  }
  if (!file.dense && e.tombstones() > 0 && s_->parent == 0) {
    return InvalidArgumentError(what + ": tombstones in a full version");
  }
  if (s_->serving && file.state_floats != 0) {
    return InvalidArgumentError(what + ": optimizer state in a serving version");
  }
  if (!file.dense && file.encoding != s_->encoding) {
    return InvalidArgumentError(what + ": written as " + EncodingName(file.encoding) +
                                ", the version uses " + EncodingName(s_->encoding));
  }
  std::error_code ec;
  const std::string path = JoinPath(s_->temp, e.path());
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) return IoError(ec, "stat", path);
  if (size != e.bytes()) {
    return DataLossError(what + ": " + std::to_string(size) + " bytes on disk, " +
                         std::to_string(e.bytes()) + " reported");
  }
  RETURN_IF_ERROR(s_->Claim(e.table(), e.shard()));
  return s_->Record(WrittenFile{e, file.dense, file.dense ? 1 : file.dim, file.state_floats,
                                file.dense ? Manifest::ENCODING_FLOAT32 : file.encoding});
}

StatusOr<WrittenShardFile> WriteShardFile(const std::string& dir, const SparseShard& shard,
                                          const ShardFileOptions& options) {
  ByteBudget budget(options.writer.fail_after_bytes);
  ASSIGN_OR_RETURN(auto written, WriteSparseInto(dir, shard, options.encoding, options.serving,
                                                 options.delta, &budget, options.writer.sync, {}));
  return WrittenShardFile{std::move(written.first), false, shard.dim, written.second,
                          options.encoding};
}

StatusOr<WrittenShardFile> WriteShardFile(const std::string& dir, const DenseSlice& slice,
                                          const ShardFileOptions& options) {
  ByteBudget budget(options.writer.fail_after_bytes);
  ASSIGN_OR_RETURN(auto written,
                   WriteDenseInto(dir, slice, options.serving, &budget, options.writer.sync, {}));
  return WrittenShardFile{std::move(written.first), true, 1, written.second,
                          Manifest::ENCODING_FLOAT32};
}

Status VersionWriter::Commit(const VersionInfo& info) {
  if (!s_) return FailedPreconditionError("moved-from VersionWriter");
  std::vector<WrittenFile> files;
  {
    MutexLock l(&s_->mu);
    RETURN_IF_ERROR(s_->UsableLocked());
    files = s_->files;
  }
  const std::string v = "version " + std::to_string(s_->version);
  Manifest m;
  m.set_format_version(kModelFormatVersion);
  m.set_version(s_->version);
  m.set_parent_version(s_->parent);
  m.set_base_version(s_->base);
  m.set_kind(s_->parent == 0 ? Manifest::KIND_FULL : Manifest::KIND_DELTA);
  m.set_created_unix_ms(info.created_unix_ms != 0
                            ? info.created_unix_ms
                            : std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
  m.set_serving(s_->serving);
  std::map<std::string, const TableSchema*> schemas;
  for (const TableSchema& t : info.tables) {
    TableSchema* out = m.add_tables();
    *out = t;
    const Encoding used = t.dense() ? Manifest::ENCODING_FLOAT32 : s_->encoding;
    if (out->value_encoding() == Manifest::ENCODING_UNSPECIFIED) out->set_value_encoding(used);
    if (out->value_encoding() != used) {
      return InvalidArgumentError(v + ": table '" + t.name() + "' says " +
                                  EncodingName(t.value_encoding()) + " but was written as " +
                                  EncodingName(used));
    }
    schemas.emplace(t.name(), out);
  }
  std::sort(files.begin(), files.end(), [](const WrittenFile& a, const WrittenFile& b) {
    if (a.entry.table() != b.entry.table()) return a.entry.table() < b.entry.table();
    return a.entry.shard() < b.entry.shard();
  });
  for (const WrittenFile& f : files) {
    const std::string fn =
        v + ": file of table '" + f.entry.table() + "' shard " + std::to_string(f.entry.shard());
    auto it = schemas.find(f.entry.table());
    if (it == schemas.end()) return InvalidArgumentError(fn + " has no table schema");
    const TableSchema& t = *it->second;
    if (t.dense() != f.dense) {
      return InvalidArgumentError(fn + " was added as " + (f.dense ? "dense" : "sparse") +
                                  " but the schema says otherwise");
    }
    if (!f.dense && t.dim() != f.dim) {
      return InvalidArgumentError(fn + " has dim " + std::to_string(f.dim) + ", schema " +
                                  std::to_string(t.dim()));
    }
    if (t.state_floats_per_value() != f.state_floats) {
      return InvalidArgumentError(fn + " has " + std::to_string(f.state_floats) +
                                  " state floats per value, schema " +
                                  std::to_string(t.state_floats_per_value()));
    }
    *m.add_files() = f.entry;
  }
  for (const StreamPosition& p : info.positions) *m.add_positions() = p;
  for (const auto& [k, val] : info.metrics) (*m.mutable_metrics())[k] = val;
  for (const auto& [k, val] : info.attributes) (*m.mutable_attributes())[k] = val;
  RETURN_IF_ERROR(ValidateManifest(m));
  ASSIGN_OR_RETURN(const std::string bytes, SerializeDeterministic(m));

  // From here on a failure aborts the version.
  const std::string manifest_path = JoinPath(s_->temp, kManifestName);
  FileSink out(manifest_path, &s_->budget, s_->options.sync);
  Status s = out.Open();
  if (s.ok()) s = out.Append(bytes.data(), bytes.size());
  if (s.ok()) s = out.Close();
  if (s.ok() && s_->options.sync) s = SyncDir(s_->temp);
  if (!s.ok()) return s_->Fail(s);
  // A delta must not appear after another process deleted its parent: the
  // check and the rename happen under the root lock DeleteVersion takes.
  std::optional<RootLock> root_lock;
  if (s_->parent != 0) {
    auto lock = RootLock::Acquire(s_->root);
    if (!lock.ok()) return s_->Fail(lock.status());
    root_lock.emplace(std::move(*lock));
    std::error_code pec;
    if (!fs::is_directory(JoinPath(s_->root, VersionDirName(s_->parent)), pec)) {
      return s_->Fail(FailedPreconditionError("parent version " + std::to_string(s_->parent) +
                                              " of delta " + std::to_string(s_->version) +
                                              " was deleted before the delta was committed"));
    }
  }
  MutexLock l(&s_->mu);
  RETURN_IF_ERROR(s_->UsableLocked());
  const std::string final_dir = JoinPath(s_->root, VersionDirName(s_->version));
  if (const int err = RenameNoReplace(s_->temp, final_dir); err != 0) {
    Status rs = IoError(err, "rename " + s_->temp + " to", final_dir);
    if (s_->failure.ok()) s_->failure = rs;
    s_->RemoveTempLocked();
    return rs;
  }
  s_->committed = true;
  if (s_->options.sync) {
    Status ds = SyncDir(s_->root);
    if (!ds.ok()) {
      return ds.WithContext(v + " is visible at " + final_dir + " but may not be durable");
    }
  }
  return OkStatus();
}

void VersionWriter::Abort() {
  if (!s_) return;
  MutexLock l(&s_->mu);
  s_->RemoveTempLocked();
}

const std::string& VersionWriter::temp_dir() const { return s_->temp; }

std::string VersionWriter::final_dir() const {
  return JoinPath(s_->root, VersionDirName(s_->version));
}

// ---------------------------------------------------------------------------
// VersionReader.

StatusOr<VersionReader> VersionReader::Open(std::string dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    if (ec && ec != std::errc::no_such_file_or_directory) return IoError(ec, "stat", dir);
    return NotFoundError("model version directory " + dir + " does not exist");
  }
  const std::string path = JoinPath(dir, kManifestName);
  auto src = FileSource::Open(path, /*must_exist=*/true);
  if (!src.ok()) return src.status();
  if (src->size() == 0) return DataLossError("manifest " + path + " is empty");
  if (src->size() > kMaxManifestBytes) {
    return DataLossError("manifest " + path + " is implausibly large (" +
                         std::to_string(src->size()) + " bytes)");
  }
  std::string bytes(src->size(), '\0');
  RETURN_IF_ERROR(src->Read(bytes.data(), bytes.size()));
  Manifest m;
  if (!m.ParseFromString(bytes)) return DataLossError("manifest " + path + " does not parse");
  Status s = ValidateManifest(m);
  if (!s.ok()) {
    if (s.code() == StatusCode::kFailedPrecondition) return s.WithContext("manifest " + path);
    return DataLossError("manifest " + path + ": " + s.message());
  }
  fs::path normal = fs::path(dir).lexically_normal();
  if (!normal.has_filename()) normal = normal.parent_path();
  if (auto named = ParseVersionDirName(normal.filename().string());
      named && *named != m.version()) {
    return DataLossError("manifest " + path + " describes version " + std::to_string(m.version()) +
                         ", not " + std::to_string(*named));
  }
  return VersionReader(std::move(dir), std::move(m));
}

const TableSchema* VersionReader::FindTable(std::string_view name) const {
  for (const TableSchema& t : manifest_.tables()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

Status VersionReader::Verify() const {
  std::vector<std::byte> buf(kIoChunk);
  for (const FileEntry& f : manifest_.files()) {
    const std::string path = JoinPath(dir_, f.path());
    ASSIGN_OR_RETURN(FileSource src, FileSource::Open(path, /*must_exist=*/true));
    if (src.size() != f.bytes()) {
      return DataLossError("model file " + path + " has " + std::to_string(src.size()) +
                           " bytes, the manifest says " + std::to_string(f.bytes()));
    }
    while (src.pos() < src.size()) {
      RETURN_IF_ERROR(src.Read(buf.data(), std::min<uint64_t>(buf.size(), src.size() - src.pos())));
    }
    if (src.crc() != f.crc32c()) {
      return DataLossError("model file " + path + " is corrupt: CRC32C mismatch");
    }
  }
  return OkStatus();
}

namespace {

struct DecodedFile {
  DataHeader header;
  std::vector<uint64_t> keys;
  std::vector<float> values;
  std::vector<float> state;
  std::vector<uint64_t> tombstones;
};

StatusOr<DecodedFile> ReadDataFile(const std::string& dir, const FileEntry& entry,
                                   const TableSchema& schema, const ReadOptions& options) {
  if (!SafeRelativePath(entry.path())) {
    return InvalidArgumentError("file path '" + entry.path() + "' is not relative");
  }
  const std::string path = JoinPath(dir, entry.path());
  auto bad = [&](const std::string& what) {
    return DataLossError("model file " + path + ": " + what);
  };
  ASSIGN_OR_RETURN(FileSource src, FileSource::Open(path, /*must_exist=*/true));
  if (src.size() != entry.bytes()) {
    return bad("has " + std::to_string(src.size()) + " bytes, the manifest says " +
               std::to_string(entry.bytes()));
  }
  std::array<std::byte, kHeaderBytes> raw;
  RETURN_IF_ERROR(src.Read(raw.data(), raw.size()));
  DecodedFile d;
  ASSIGN_OR_RETURN(d.header, DecodeHeader(raw, path));
  const DataHeader& h = d.header;
  if ((h.layout == kLayoutDense) != schema.dense()) {
    return bad(std::string("is ") + (h.layout == kLayoutDense ? "dense" : "sparse") +
               " but table '" + schema.name() + "' is not");
  }
  if (h.encoding != schema.value_encoding()) {
    return bad("is " + EncodingName(h.encoding) + ", the manifest says " +
               EncodingName(schema.value_encoding()));
  }
  if (!schema.dense() && h.dim != schema.dim()) {
    return bad("dim " + std::to_string(h.dim) + ", table says " + std::to_string(schema.dim()));
  }
  if (h.state_floats != schema.state_floats_per_value()) {
    return bad(std::to_string(h.state_floats) + " state floats per value, table says " +
               std::to_string(schema.state_floats_per_value()));
  }
  if (h.shard != entry.shard() || h.rows != entry.rows() || h.tombstones != entry.tombstones() ||
      h.offset != entry.offset()) {
    return bad("header (shard " + std::to_string(h.shard) + ", rows " + std::to_string(h.rows) +
               ", tombstones " + std::to_string(h.tombstones) + ", offset " +
               std::to_string(h.offset) + ") disagrees with the manifest");
  }
  const auto sections = ComputeSections(h);
  if (!sections || sections->total != src.size()) {
    return bad("header describes " +
               (sections ? std::to_string(sections->total) : std::string("an impossible")) +
               " bytes, file has " + std::to_string(src.size()));
  }
  // Every array below is bounded by the file size checked above.
  const uint64_t n_values = h.rows * (h.layout == kLayoutSparse ? h.dim : 1);
  if (h.layout == kLayoutSparse) RETURN_IF_ERROR(src.ReadArray(h.rows, &d.keys));
  RETURN_IF_ERROR(ReadValues(&src, n_values, h.rows, h.layout == kLayoutSparse ? h.dim : 1,
                             static_cast<Encoding>(h.encoding), &d.values));
  RETURN_IF_ERROR(src.ReadArray(h.rows * h.state_floats, &d.state));
  RETURN_IF_ERROR(src.SkipPadding());
  RETURN_IF_ERROR(src.ReadArray(h.tombstones, &d.tombstones));
  if (src.pos() != src.size()) return bad("trailing bytes");
  if (options.verify_checksum && src.crc() != entry.crc32c()) {
    return bad("is corrupt: CRC32C mismatch");
  }
  return d;
}

}  // namespace

StatusOr<SparseShard> VersionReader::ReadSparse(const FileEntry& entry,
                                                const ReadOptions& options) const {
  const TableSchema* schema = FindTable(entry.table());
  if (schema == nullptr) {
    return InvalidArgumentError("version " + std::to_string(version()) + " has no table '" +
                                entry.table() + "'");
  }
  if (schema->dense()) return InvalidArgumentError("table '" + entry.table() + "' is dense");
  ASSIGN_OR_RETURN(DecodedFile d, ReadDataFile(dir_, entry, *schema, options));
  SparseShard s;
  s.table = entry.table();
  s.shard = d.header.shard;
  s.dim = d.header.dim;
  s.state_floats = d.header.state_floats;
  s.keys = std::move(d.keys);
  s.values = std::move(d.values);
  s.state = std::move(d.state);
  s.tombstones = std::move(d.tombstones);
  return s;
}

StatusOr<DenseSlice> VersionReader::ReadDense(const FileEntry& entry,
                                              const ReadOptions& options) const {
  const TableSchema* schema = FindTable(entry.table());
  if (schema == nullptr) {
    return InvalidArgumentError("version " + std::to_string(version()) + " has no table '" +
                                entry.table() + "'");
  }
  if (!schema->dense()) return InvalidArgumentError("table '" + entry.table() + "' is sparse");
  ASSIGN_OR_RETURN(DecodedFile d, ReadDataFile(dir_, entry, *schema, options));
  DenseSlice s;
  s.table = entry.table();
  s.shard = d.header.shard;
  s.offset = d.header.offset;
  s.state_floats = d.header.state_floats;
  s.values = std::move(d.values);
  s.state = std::move(d.state);
  return s;
}

// ---------------------------------------------------------------------------
// Roots: listing, retention, chains.

StatusOr<std::vector<uint64_t>> ListVersions(const std::string& root) {
  std::error_code ec;
  fs::directory_iterator it(root, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) {
      return NotFoundError("model root " + root + " does not exist");
    }
    return IoError(ec, "list", root);
  }
  std::vector<uint64_t> versions;
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    auto v = ParseVersionDirName(it->path().filename().string());
    std::error_code type_ec;
    if (v && it->is_directory(type_ec)) versions.push_back(*v);
  }
  if (ec) return IoError(ec, "list", root);
  std::sort(versions.begin(), versions.end());
  return versions;
}

namespace {

using ManifestMap = std::map<uint64_t, std::optional<Manifest>>;

// Manifests of `versions` under `root`; nullopt for those that cannot be read.
ManifestMap ReadManifests(const std::string& root, const std::vector<uint64_t>& versions) {
  ManifestMap manifests;
  for (uint64_t v : versions) {
    auto r = VersionReader::Open(JoinPath(root, VersionDirName(v)));
    if (r.ok()) {
      manifests.emplace(v, r->manifest());
    } else {
      manifests.emplace(v, std::nullopt);
    }
  }
  return manifests;
}

// The committed versions in the chain of `v` (v itself first, then its parents
// as far as they are committed and readable).
std::vector<uint64_t> ChainOf(const ManifestMap& manifests, uint64_t v) {
  std::vector<uint64_t> chain;
  auto it = manifests.find(v);
  while (it != manifests.end()) {
    chain.push_back(it->first);
    if (!it->second || it->second->kind() != Manifest::KIND_DELTA) break;
    it = manifests.find(it->second->parent_version());  // strictly decreasing (validated)
  }
  return chain;
}

// Pinned versions and every version their chains need.
std::set<uint64_t> PinnedChains(const ManifestMap& manifests, const std::vector<uint64_t>& pins) {
  std::set<uint64_t> out;
  for (uint64_t p : pins) {
    for (uint64_t v : ChainOf(manifests, p)) out.insert(v);
  }
  return out;
}

// "1, 2, 5" (at most `max` numbers, then how many more), or "none".
std::string VersionListText(const std::vector<uint64_t>& versions, size_t max = 20) {
  if (versions.empty()) return "none";
  std::string out;
  for (size_t i = 0; i < versions.size() && i < max; ++i) {
    out += (i ? ", " : "") + std::to_string(versions[i]);
  }
  if (versions.size() > max) out += " and " + std::to_string(versions.size() - max) + " more";
  return out;
}

Status NotCommittedError(const std::string& root, uint64_t version,
                         const std::vector<uint64_t>& versions) {
  return NotFoundError("version " + std::to_string(version) + " is not committed under " + root +
                       " (versions there: " + VersionListText(versions) + ")");
}

constexpr char kPinsDir[] = "pins";

}  // namespace

StatusOr<std::vector<uint64_t>> ListPins(const std::string& root) {
  std::error_code ec;
  if (!fs::is_directory(root, ec)) {
    if (ec && ec != std::errc::no_such_file_or_directory) return IoError(ec, "stat", root);
    return NotFoundError("model root " + root + " does not exist");
  }
  const std::string dir = JoinPath(root, kPinsDir);
  std::vector<uint64_t> pins;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    if (ec == std::errc::no_such_file_or_directory) return pins;
    return IoError(ec, "list", dir);
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    if (auto v = ParseVersionDirName(it->path().filename().string())) pins.push_back(*v);
  }
  if (ec) return IoError(ec, "list", dir);
  std::sort(pins.begin(), pins.end());
  return pins;
}

Status PinVersion(const std::string& root, uint64_t version) {
  ASSIGN_OR_RETURN(RootLock lock, RootLock::Acquire(root));
  ASSIGN_OR_RETURN(const std::vector<uint64_t> versions, ListVersions(root));
  if (!std::binary_search(versions.begin(), versions.end(), version)) {
    return NotCommittedError(root, version, versions);
  }
  const std::string dir = JoinPath(root, kPinsDir);
  std::error_code ec;
  if (fs::create_directory(dir, ec)) {
    RETURN_IF_ERROR(SyncDir(root));
  } else if (ec) {
    return IoError(ec, "create directory", dir);
  }
  const std::string path = JoinPath(dir, VersionDirName(version));
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
  if (fd.get() < 0) return IoError(errno, "create", path);
  if (::close(fd.Release()) != 0) return IoError(errno, "close", path);
  return SyncDir(dir);
}

Status UnpinVersion(const std::string& root, uint64_t version) {
  ASSIGN_OR_RETURN(RootLock lock, RootLock::Acquire(root));
  const std::string dir = JoinPath(root, kPinsDir);
  const std::string path = JoinPath(dir, VersionDirName(version));
  if (::unlink(path.c_str()) != 0) {
    const int err = errno;
    if (err == ENOENT) {
      ASSIGN_OR_RETURN(const std::vector<uint64_t> pins, ListPins(root));
      return NotFoundError("version " + std::to_string(version) + " is not pinned under " + root +
                           " (pinned: " + VersionListText(pins) + ")");
    }
    return IoError(err, "remove", path);
  }
  return SyncDir(dir);
}

Status DeleteVersion(const std::string& root, uint64_t version) {
  std::string doomed;
  {
    ASSIGN_OR_RETURN(RootLock lock, RootLock::Acquire(root));
    ASSIGN_OR_RETURN(const std::vector<uint64_t> versions, ListVersions(root));
    if (!std::binary_search(versions.begin(), versions.end(), version)) {
      return NotCommittedError(root, version, versions);
    }
    const std::string v = "version " + std::to_string(version);
    ASSIGN_OR_RETURN(const std::vector<uint64_t> pins, ListPins(root));
    if (std::binary_search(pins.begin(), pins.end(), version)) {
      return FailedPreconditionError(v + " is pinned; unpin it before deleting it");
    }
    const ManifestMap manifests = ReadManifests(root, versions);
    std::vector<uint64_t> dependents, unreadable;
    for (const auto& [other, m] : manifests) {
      if (other <= version) continue;  // only newer versions can be deltas of it
      if (!m) {
        unreadable.push_back(other);
        continue;
      }
      const std::vector<uint64_t> chain = ChainOf(manifests, other);
      if (std::find(chain.begin(), chain.end(), version) != chain.end()) {
        dependents.push_back(other);
      }
    }
    if (!dependents.empty()) {
      std::vector<uint64_t> pinned_dependents;
      for (uint64_t d : dependents) {
        if (std::binary_search(pins.begin(), pins.end(), d)) pinned_dependents.push_back(d);
      }
      return FailedPreconditionError(
          v + " is needed by the chain of version(s) " + VersionListText(dependents) +
          (pinned_dependents.empty() ? ""
                                     : " (pinned: " + VersionListText(pinned_dependents) + ")") +
          "; delete those first");
    }
    if (!unreadable.empty()) {
      return FailedPreconditionError(
          v + " may be needed by newer version(s) " + VersionListText(unreadable) +
          " whose manifest cannot be read; repair or delete those first");
    }
    const std::string from = JoinPath(root, VersionDirName(version));
    doomed =
        JoinPath(root, "." + VersionDirName(version) + std::string(kDeletingTag) + RandomSuffix());
    if (const int err = RenameNoReplace(from, doomed); err != 0) {
      return IoError(err, "rename " + from + " to", doomed);
    }
    RETURN_IF_ERROR(SyncDir(root));
  }
  std::error_code ec;
  fs::remove_all(doomed, ec);
  if (ec) {
    return IoError(ec, "remove", doomed)
        .WithContext("version " + std::to_string(version) +
                     " is deleted but its files are not all removed (retention finishes it)");
  }
  return OkStatus();
}

Status ApplyRetention(const std::string& root, int keep_full) {
  RetentionOptions options;
  options.keep_full = keep_full;
  return ApplyRetention(root, options);
}

Status ApplyRetention(const std::string& root, const RetentionOptions& options) {
  if (options.keep_full < 1) return InvalidArgumentError("retention must keep at least 1 full");
  // Held while deciding and renaming, so that a pin taken meanwhile by another
  // process is honoured; the slow removal happens after it is released.
  std::optional<RootLock> lock;
  {
    ASSIGN_OR_RETURN(RootLock l, RootLock::Acquire(root));
    lock.emplace(std::move(l));
  }
  ASSIGN_OR_RETURN(const std::vector<uint64_t> versions, ListVersions(root));
  ASSIGN_OR_RETURN(const std::vector<uint64_t> pins, ListPins(root));
  const ManifestMap manifests = ReadManifests(root, versions);
  for (const auto& [v, m] : manifests) {
    if (!m) LOG(WARNING) << "retention under " << root << " cannot read version " << v;
  }
  std::vector<uint64_t> fulls;
  for (const auto& [v, m] : manifests) {
    if (m && m->kind() == Manifest::KIND_FULL) fulls.push_back(v);
  }
  std::sort(fulls.rbegin(), fulls.rend());
  if (fulls.size() > static_cast<size_t>(options.keep_full)) fulls.resize(options.keep_full);
  const std::set<uint64_t> kept_fulls(fulls.begin(), fulls.end());

  std::vector<uint64_t> doomed;
  if (!kept_fulls.empty()) {
    const uint64_t oldest_kept = *kept_fulls.begin();
    for (const auto& [v, m] : manifests) {
      bool keep = false;
      if (!m) {
        keep = v > oldest_kept;
      } else if (m->kind() == Manifest::KIND_FULL) {
        keep = kept_fulls.count(v) > 0;
      } else {
        // Follow the parents down to a full version.
        uint64_t p = m->parent_version();
        while (true) {
          auto it = manifests.find(p);
          if (it == manifests.end()) break;  // broken chain: useless
          if (!it->second) {
            keep = v > oldest_kept;  // unknown: be conservative
            break;
          }
          if (it->second->kind() == Manifest::KIND_FULL) {
            keep = kept_fulls.count(p) > 0;
            break;
          }
          p = it->second->parent_version();  // strictly decreasing (validated)
        }
      }
      if (!keep) doomed.push_back(v);
    }
  }
  const std::set<uint64_t> pinned_chains = PinnedChains(manifests, pins);
  std::erase_if(doomed, [&](uint64_t v) { return pinned_chains.count(v) > 0; });

  Status first_error;
  auto note = [&](Status s) {
    if (!s.ok()) {
      LOG(WARNING) << "retention under " << root << ": " << s;
      if (first_error.ok()) first_error = s;
    }
  };
  // Newest first: a delta disappears before its parent.
  std::sort(doomed.rbegin(), doomed.rend());
  std::vector<std::string> to_remove;
  for (uint64_t v : doomed) {
    const std::string from = JoinPath(root, VersionDirName(v));
    const std::string to =
        JoinPath(root, "." + VersionDirName(v) + std::string(kDeletingTag) + RandomSuffix());
    if (const int err = RenameNoReplace(from, to); err != 0) {
      note(IoError(err, "rename " + from + " to", to));
      break;  // keep the order guarantee: stop before deleting any parent
    }
    to_remove.push_back(to);
  }
  if (!to_remove.empty()) note(SyncDir(root));
  lock.reset();

  const uint64_t newest = versions.empty() ? 0 : versions.back();
  std::error_code ec;
  const auto now = fs::file_time_type::clock::now();
  for (fs::directory_iterator it(root, ec); !ec && it != fs::directory_iterator();
       it.increment(ec)) {
    auto t = ParseTempDirName(it->path().filename().string());
    if (!t) continue;
    const std::string path = it->path().string();
    if (std::find(to_remove.begin(), to_remove.end(), path) != to_remove.end()) continue;
    bool stale = t->deleting || t->version <= newest;
    if (!stale) {
      std::error_code tec;
      const auto mtime = fs::last_write_time(it->path(), tec);
      stale = !tec && now - mtime > options.stale_temp_age;
    }
    if (stale) to_remove.push_back(path);
  }
  if (ec) note(IoError(ec, "list", root));
  for (const std::string& path : to_remove) {
    std::error_code rec;
    fs::remove_all(path, rec);
    if (rec) note(IoError(rec, "remove", path));
  }
  return first_error;
}

StatusOr<std::vector<uint64_t>> ResolveChain(const std::string& root, uint64_t version) {
  ASSIGN_OR_RETURN(const std::vector<uint64_t> versions, ListVersions(root));
  const std::set<uint64_t> committed(versions.begin(), versions.end());
  if (committed.count(version) == 0) {
    std::string around;
    auto above = committed.upper_bound(version);
    if (above != committed.begin()) {
      around += "newest below: " + std::to_string(*std::prev(above));
    }
    if (above != committed.end()) {
      around += std::string(around.empty() ? "" : ", ") + "oldest above: " + std::to_string(*above);
    }
    return NotFoundError("version " + std::to_string(version) + " is not committed under " + root +
                         " (" + (around.empty() ? "no versions" : around) + ")");
  }
  std::vector<uint64_t> chain;
  uint64_t v = version;
  uint64_t base = 0;
  while (true) {
    ASSIGN_OR_RETURN(VersionReader r, VersionReader::Open(JoinPath(root, VersionDirName(v))));
    const Manifest& m = r.manifest();
    if (base != 0 && m.base_version() != base) {
      return DataLossError("version " + std::to_string(v) + " has base " +
                           std::to_string(m.base_version()) + " but its delta " +
                           std::to_string(chain.back()) + " expects base " + std::to_string(base));
    }
    base = m.base_version();
    chain.push_back(v);
    if (m.kind() == Manifest::KIND_FULL) break;
    const uint64_t p = m.parent_version();
    if (committed.count(p) == 0) {
      if (p == m.base_version()) {
        return NotFoundError("version " + std::to_string(version) + " needs full version " +
                             std::to_string(p) +
                             " (the root of its chain), which is missing under " + root);
      }
      return NotFoundError("version " + std::to_string(version) + " needs delta " +
                           std::to_string(p) + " (parent of " + std::to_string(v) +
                           "), which is missing under " + root + ": the chain to full version " +
                           std::to_string(m.base_version()) + " is broken");
    }
    v = p;  // strictly decreasing (validated), so this ends
  }
  std::reverse(chain.begin(), chain.end());
  return chain;
}

// ---------------------------------------------------------------------------
// Materialization.

void SparseRows::Upsert(uint64_t key, std::span<const float> values, std::span<const float> state) {
  DCHECK_EQ(values.size(), dim_);
  DCHECK(state.empty() || state.size() == state_floats_);
  auto [it, inserted] = slot_.emplace(key, keys_.size());
  const size_t i = it->second;
  if (inserted) {
    keys_.push_back(key);
    values_.resize(values_.size() + dim_);
    state_.resize(state_.size() + state_floats_);
  }
  std::copy(values.begin(), values.end(), values_.begin() + i * dim_);
  if (state.empty()) {
    std::fill_n(state_.begin() + i * state_floats_, state_floats_, 0.0f);
  } else {
    std::copy(state.begin(), state.end(), state_.begin() + i * state_floats_);
  }
}

void SparseRows::Reserve(size_t rows) {
  slot_.reserve(rows);
  keys_.reserve(rows);
  values_.reserve(rows * dim_);
  state_.reserve(rows * state_floats_);
}

bool SparseRows::Erase(uint64_t key) {
  auto it = slot_.find(key);
  if (it == slot_.end()) return false;
  const size_t i = it->second;
  const size_t last = keys_.size() - 1;
  slot_.erase(it);
  if (i != last) {
    keys_[i] = keys_[last];
    std::copy_n(values_.begin() + last * dim_, dim_, values_.begin() + i * dim_);
    std::copy_n(state_.begin() + last * state_floats_, state_floats_,
                state_.begin() + i * state_floats_);
    slot_[keys_[i]] = i;
  }
  keys_.pop_back();
  values_.resize(values_.size() - dim_);
  state_.resize(state_.size() - state_floats_);
  return true;
}

std::span<const float> SparseRows::Find(uint64_t key) const {
  auto it = slot_.find(key);
  if (it == slot_.end()) return {};
  return std::span(values_).subspan(it->second * dim_, dim_);
}

std::span<const float> SparseRows::FindState(uint64_t key) const {
  auto it = slot_.find(key);
  if (it == slot_.end()) return {};
  return std::span(state_).subspan(it->second * state_floats_, state_floats_);
}

Status ApplyVersion(const VersionReader& reader, MaterializedModel* model,
                    const MaterializeOptions& options) {
  const Manifest& m = reader.manifest();
  const std::string v = "version " + std::to_string(m.version());
  if (m.kind() == Manifest::KIND_FULL) {
    *model = MaterializedModel{};
  } else if (model->manifest.version() != m.parent_version()) {
    return FailedPreconditionError(
        v + " is a delta of version " + std::to_string(m.parent_version()) +
        " but the model is at version " + std::to_string(model->manifest.version()));
  }
  std::map<std::string, SparseRows> sparse;
  std::map<std::string, DenseTensor> dense;
  for (const TableSchema& t : m.tables()) {
    const std::string tn = v + ": table '" + t.name() + "'";
    if (!t.dense()) {
      auto it = model->sparse.find(t.name());
      if (it == model->sparse.end()) {
        sparse.emplace(t.name(), SparseRows(t.dim(), t.state_floats_per_value()));
      } else if (it->second.dim() != t.dim() ||
                 it->second.state_floats() != t.state_floats_per_value()) {
        return DataLossError(tn + " changes dim or state floats from its parent");
      } else {
        sparse.emplace(t.name(), std::move(it->second));
      }
    } else {
      const uint64_t n = DenseElements(t);
      auto it = model->dense.find(t.name());
      if (it == model->dense.end()) {
        DenseTensor d;
        d.values.assign(n, 0.0f);
        d.state_floats = t.state_floats_per_value();
        d.state.assign(n * d.state_floats, 0.0f);
        dense.emplace(t.name(), std::move(d));
      } else if (it->second.values.size() != n ||
                 it->second.state_floats != t.state_floats_per_value()) {
        return DataLossError(tn + " changes shape or state floats from its parent");
      } else {
        dense.emplace(t.name(), std::move(it->second));
      }
    }
  }
  model->sparse = std::move(sparse);
  // Room for the rows this version brings (a delta's mostly replace: a small
  // over-reservation), so that large tables are not rehashed and regrown.
  std::map<std::string, uint64_t> incoming;
  for (const FileEntry& f : m.files()) {
    if (options.include && !options.include(f)) continue;
    if (model->sparse.count(f.table()) > 0) incoming[f.table()] += f.rows();
  }
  for (const auto& [name, n] : incoming) {
    SparseRows& rows = model->sparse.at(name);
    rows.Reserve(rows.size() + n);
  }
  model->dense = std::move(dense);
  const ReadOptions read{.verify_checksum = options.verify_checksums};
  for (const FileEntry& f : m.files()) {
    if (options.include && !options.include(f)) continue;
    if (model->sparse.count(f.table()) > 0) {
      ASSIGN_OR_RETURN(SparseShard shard, reader.ReadSparse(f, read));
      SparseRows& rows = model->sparse.at(f.table());
      for (uint64_t k : shard.tombstones) rows.Erase(k);
      const std::span<const float> values(shard.values), state(shard.state);
      for (size_t i = 0; i < shard.keys.size(); ++i) {
        rows.Upsert(
            shard.keys[i], values.subspan(i * shard.dim, shard.dim),
            state.empty() ? state : state.subspan(i * shard.state_floats, shard.state_floats));
      }
    } else {
      ASSIGN_OR_RETURN(DenseSlice slice, reader.ReadDense(f, read));
      DenseTensor& d = model->dense.at(f.table());
      // In range: the manifest was validated and the header matches the entry.
      std::copy(slice.values.begin(), slice.values.end(), d.values.begin() + slice.offset);
      std::copy(slice.state.begin(), slice.state.end(),
                d.state.begin() + slice.offset * d.state_floats);
    }
  }
  model->manifest = m;
  if (m.kind() == Manifest::KIND_FULL) model->chain.clear();
  model->chain.push_back(m.version());
  return OkStatus();
}

StatusOr<MaterializedModel> Materialize(const std::string& root, uint64_t version,
                                        const MaterializeOptions& options) {
  ASSIGN_OR_RETURN(const std::vector<uint64_t> chain, ResolveChain(root, version));
  MaterializedModel model;
  for (uint64_t v : chain) {
    ASSIGN_OR_RETURN(VersionReader r, VersionReader::Open(JoinPath(root, VersionDirName(v))));
    RETURN_IF_ERROR(ApplyVersion(r, &model, options)
                        .WithContext("materializing version " + std::to_string(version)));
  }
  return model;
}

// ---------------------------------------------------------------------------
// Serving exports.

namespace {

// What a serving copy of `m` commits: the same tables without optimizer state
// (sparse encodings left to the writer), positions, metrics, attributes, time.
VersionInfo ServingInfo(const Manifest& m) {
  VersionInfo info;
  for (const TableSchema& t : m.tables()) {
    TableSchema out = t;
    out.set_state_floats_per_value(0);
    if (!t.dense()) out.clear_value_encoding();
    info.tables.push_back(std::move(out));
  }
  info.positions.assign(m.positions().begin(), m.positions().end());
  for (const auto& [k, v] : m.metrics()) info.metrics[k] = v;
  for (const auto& [k, v] : m.attributes()) info.attributes[k] = v;
  info.created_unix_ms = m.created_unix_ms();
  return info;
}

// Runs fn(0..n-1) on up to `threads` threads; returns the first error.
Status ForEachParallel(size_t n, int threads, const std::function<Status(size_t)>& fn) {
  std::atomic<size_t> next{0};
  Mutex mu;
  Status first;
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) {
      Status s = fn(i);
      if (!s.ok()) {
        MutexLock l(&mu);
        if (first.ok()) first = std::move(s);
        next = n;  // stop handing out work
      }
    }
  };
  const size_t count = std::clamp<size_t>(static_cast<size_t>(std::max(threads, 1)), 1, n);
  {
    std::vector<std::jthread> pool;
    for (size_t t = 1; t < count; ++t) pool.emplace_back(work);
    work();
  }  // joins
  MutexLock l(&mu);
  return first;
}

Status ExportFull(const std::string& src_root, uint64_t version, VersionWriter* writer,
                  const ExportOptions& options, const std::vector<Manifest>& chain) {
  const Manifest& target = chain.back();
  const Manifest& base = chain.front();
  std::map<std::string, const TableSchema*> sparse_tables, dense_tables;
  for (const TableSchema& t : target.tables())
    (t.dense() ? dense_tables : sparse_tables)[t.name()] = &t;

  // Dense tensors are small: materialize them whole, then cut them as the chain's
  // full version did (or into one slice for a table it did not have).
  if (!dense_tables.empty()) {
    MaterializeOptions mo;
    mo.verify_checksums = options.verify_checksums;
    mo.include = [&](const FileEntry& f) { return dense_tables.count(f.table()) > 0; };
    ASSIGN_OR_RETURN(MaterializedModel model, Materialize(src_root, version, mo));
    for (const auto& [name, schema] : dense_tables) {
      const std::vector<float>& values = model.dense.at(name).values;
      std::vector<DenseSlice> slices;
      for (const FileEntry& f : base.files()) {
        if (f.table() != name) continue;
        DenseSlice d;
        d.table = name;
        d.shard = f.shard();
        d.offset = f.offset();
        d.values.assign(values.begin() + f.offset(), values.begin() + f.offset() + f.rows());
        slices.push_back(std::move(d));
      }
      uint64_t covered = 0;
      for (const DenseSlice& d : slices) covered += d.values.size();
      if (covered != values.size()) {  // the table is newer than the full version
        slices.clear();
        DenseSlice whole;
        whole.table = name;
        whole.values = values;
        slices.push_back(std::move(whole));
      }
      for (const DenseSlice& d : slices) RETURN_IF_ERROR(writer->AddDense(d));
    }
  }

  // Sparse tables shard by shard: the files of shard s give shard s's rows.
  std::set<uint32_t> shard_set;
  for (const Manifest& m : chain) {
    for (const FileEntry& f : m.files()) {
      if (sparse_tables.count(f.table()) > 0) shard_set.insert(f.shard());
    }
  }
  const std::vector<uint32_t> shards(shard_set.begin(), shard_set.end());
  return ForEachParallel(shards.size(), options.threads, [&](size_t i) -> Status {
    const uint32_t shard = shards[i];
    MaterializeOptions mo;
    mo.verify_checksums = options.verify_checksums;
    mo.include = [&](const FileEntry& f) {
      return f.shard() == shard && sparse_tables.count(f.table()) > 0;
    };
    ASSIGN_OR_RETURN(MaterializedModel model, Materialize(src_root, version, mo));
    for (auto& [name, rows] : model.sparse) {
      if (rows.size() == 0) continue;
      SparseShard out;
      out.table = name;
      out.shard = shard;
      out.dim = rows.dim();
      out.keys = rows.keys();
      out.values.reserve(rows.size() * rows.dim());
      for (uint64_t key : out.keys) {
        const std::span<const float> v = rows.Find(key);
        out.values.insert(out.values.end(), v.begin(), v.end());
      }
      rows = SparseRows();  // release the shard's rows before writing
      RETURN_IF_ERROR(writer->AddSparse(out));
    }
    return OkStatus();
  });
}

Status ExportDelta(const std::string& src_root, VersionWriter* writer, const ExportOptions& options,
                   const Manifest& target) {
  ASSIGN_OR_RETURN(VersionReader reader,
                   VersionReader::Open(JoinPath(src_root, VersionDirName(target.version()))));
  const ReadOptions read{.verify_checksum = options.verify_checksums};
  const auto& files = target.files();
  return ForEachParallel(files.size(), options.threads, [&](size_t i) -> Status {
    const FileEntry& f = files[static_cast<int>(i)];
    const TableSchema* t = reader.FindTable(f.table());
    if (t != nullptr && t->dense()) {
      ASSIGN_OR_RETURN(DenseSlice d, reader.ReadDense(f, read));
      d.state.clear();
      d.state_floats = 0;
      return writer->AddDense(d);
    }
    ASSIGN_OR_RETURN(SparseShard sh, reader.ReadSparse(f, read));
    sh.state.clear();
    sh.state_floats = 0;
    return writer->AddSparse(sh);
  });
}

}  // namespace

Status ExportForServing(const std::string& src_root, uint64_t version, const std::string& dst_root,
                        Encoding encoding, const ExportOptions& options) {
  const std::string what =
      "exporting version " + std::to_string(version) + " of " + src_root + " to " + dst_root;
  ASSIGN_OR_RETURN(const std::vector<uint64_t> chain_versions, ResolveChain(src_root, version));
  std::vector<Manifest> chain;
  for (uint64_t v : chain_versions) {
    ASSIGN_OR_RETURN(VersionReader r, VersionReader::Open(JoinPath(src_root, VersionDirName(v))));
    chain.push_back(r.manifest());
  }
  const Manifest& target = chain.back();
  uint64_t parent = 0;
  if (options.delta) {
    if (target.kind() != Manifest::KIND_DELTA) {
      return InvalidArgumentError(what + ": version " + std::to_string(version) +
                                  " is a full version; export it as a full version");
    }
    parent = target.parent_version();
    auto p = VersionReader::Open(JoinPath(dst_root, VersionDirName(parent)));
    if (!p.ok()) {
      return FailedPreconditionError(what + " as a delta: its parent " + std::to_string(parent) +
                                     " is not exported there yet (" + p.status().message() +
                                     "); export the parent first");
    }
    if (!p->manifest().serving()) {
      return FailedPreconditionError(what + ": version " + std::to_string(parent) + " under " +
                                     dst_root + " is not a serving version");
    }
  }
  ASSIGN_OR_RETURN(VersionWriter writer,
                   VersionWriter::Begin(dst_root, version, parent,
                                        /*serving=*/true, encoding, options.writer));
  Status s = options.delta ? ExportDelta(src_root, &writer, options, target)
                           : ExportFull(src_root, version, &writer, options, chain);
  if (s.ok()) s = writer.Commit(ServingInfo(target));
  if (!s.ok()) {
    writer.Abort();
    return s.WithContext(what);
  }
  return OkStatus();
}

}  // namespace eddy::model_store
