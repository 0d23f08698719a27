// Internal to model_store: errno text and I/O error codes, path and overflow
// helpers, and the file primitives every unit of the format uses: a file
// descriptor owner, directory fsync, the root directory's flock, a byte budget,
// a buffered CRC32C-tracking writer and a bounds-checked CRC32C-tracking reader.
// Thread-safety: ByteBudget is thread-safe; the other classes are not.
#ifndef EDDY_MODEL_STORE_INTERNAL_FILE_IO_H_
#define EDDY_MODEL_STORE_INTERNAL_FILE_IO_H_

#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "common/status.h"

namespace eddy::model_store::internal {

inline constexpr size_t kIoChunk = 1 << 20;

// strerror_r's text for `err`.
std::string ErrnoText(int err);

Status AlreadyExistsError(std::string m);

// "<op> <path>: <strerror>" with a code that says what the caller can do
// (ResourceExhausted for a full disk, FailedPrecondition for permissions,
// NotFound, AlreadyExists, DataLoss for EIO, else Unavailable).
Status IoError(int err, std::string_view op, const std::string& path);
Status IoError(const std::error_code& ec, std::string_view op, const std::string& path);

// False on overflow.
inline bool CheckedMul(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
inline bool CheckedAdd(uint64_t a, uint64_t b, uint64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}
// `n` rounded up to a multiple of 8.
inline uint64_t Pad8(uint64_t n) { return (n + 7) & ~uint64_t{7}; }

// `dir`/`name`, without doubling a trailing slash.
std::string JoinPath(const std::string& dir, std::string_view name);

// Owns a file descriptor; closes it on destruction.
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

// Opens `dir` and fsyncs it.
Status SyncDir(const std::string& dir);

// An exclusive flock(2) on a root directory, held until destruction. Pin,
// unpin, delete, retention and the commit of a delta take it, so that none of
// them acts on a decision another process has invalidated.
class RootLock {
 public:
  // NotFound when `root` does not exist; I/O errors.
  static StatusOr<RootLock> Acquire(const std::string& root);

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
  FileSink(std::string path, ByteBudget* budget, bool sync);

  // Creates the file (it must not exist).
  Status Open();
  Status Append(const void* data, size_t n);
  template <typename T>
  Status AppendArray(std::span<const T> a) {
    return Append(a.data(), a.size_bytes());
  }
  // Zero bytes up to the next multiple of 8.
  Status PadTo8();
  // Flushes, fsyncs (if asked) and closes.
  Status Close();

  uint64_t bytes() const { return bytes_; }
  uint32_t crc() const { return crc_; }

 private:
  Status Flush();

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
  static StatusOr<FileSource> Open(const std::string& path, bool must_exist);

  uint64_t size() const { return size_; }
  uint64_t pos() const { return pos_; }
  uint32_t crc() const { return crc_; }
  const std::string& path() const { return path_; }

  // Reads exactly `n` bytes (DataLoss past the end).
  Status Read(void* dst, uint64_t n);
  template <typename T>
  Status ReadArray(uint64_t count, std::vector<T>* out) {
    out->resize(count);  // callers bound count by the file size first
    return Read(out->data(), count * sizeof(T));
  }
  // Reads the zero padding up to the next multiple of 8 (DataLoss if not zero).
  Status SkipPadding();

 private:
  FileSource(std::string path, UniqueFd fd, uint64_t size)
      : path_(std::move(path)), fd_(std::move(fd)), size_(size) {}
  std::string path_;
  UniqueFd fd_;
  uint64_t size_;
  uint64_t pos_ = 0;
  uint32_t crc_ = 0;
};

}  // namespace eddy::model_store::internal

#endif  // EDDY_MODEL_STORE_INTERNAL_FILE_IO_H_
