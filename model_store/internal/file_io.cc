#include "model_store/internal/file_io.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <type_traits>

#include "model_store/crc32c.h"

namespace eddy::model_store::internal {

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

std::string JoinPath(const std::string& dir, std::string_view name) {
  if (dir.empty() || dir.back() == '/') return dir + std::string(name);
  return dir + "/" + std::string(name);
}

Status SyncDir(const std::string& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return IoError(errno, "open directory", dir);
  if (::fsync(fd.get()) != 0) return IoError(errno, "fsync directory", dir);
  return OkStatus();
}

StatusOr<RootLock> RootLock::Acquire(const std::string& root) {
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

FileSink::FileSink(std::string path, ByteBudget* budget, bool sync)
    : path_(std::move(path)), budget_(budget), sync_(sync) {
  buf_.reserve(kIoChunk);
}

Status FileSink::Open() {
  fd_ = UniqueFd(::open(path_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (fd_.get() < 0) return IoError(errno, "create", path_);
  return OkStatus();
}

Status FileSink::Append(const void* data, size_t n) {
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

Status FileSink::PadTo8() {
  static constexpr std::byte kZeros[8] = {};
  return Append(kZeros, Pad8(bytes_) - bytes_);
}

Status FileSink::Close() {
  RETURN_IF_ERROR(Flush());
  if (sync_ && ::fsync(fd_.get()) != 0) return IoError(errno, "fsync", path_);
  if (::close(fd_.Release()) != 0) return IoError(errno, "close", path_);
  return OkStatus();
}

Status FileSink::Flush() {
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

StatusOr<FileSource> FileSource::Open(const std::string& path, bool must_exist) {
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

Status FileSource::Read(void* dst, uint64_t n) {
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

Status FileSource::SkipPadding() {
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

}  // namespace eddy::model_store::internal
