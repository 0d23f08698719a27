#include "worker/data/source.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <poll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <span>

namespace eddy::worker {

namespace internal {

// Splits bytes read in large chunks into lines, without copying complete lines.
// Lines longer than max_line_bytes are yielded truncated and the rest skipped.
class LineReader {
 public:
  explicit LineReader(const SourceOptions& options)
      : chunk_(std::max<size_t>(options.read_bytes, 1)),
        max_line_(options.max_line_bytes),
        buf_(max_line_ + 1 + chunk_) {}

  void Reset() {
    begin_ = scan_ = end_ = 0;
    skipping_ = false;
    line_number_ = 0;
  }

  // A complete buffered line, if there is one.
  bool TakeLine(Line* line) {
    while (skipping_) {
      const char* nl = static_cast<const char*>(std::memchr(&buf_[begin_], '\n', end_ - begin_));
      if (nl == nullptr) {
        begin_ = scan_ = end_;
        return false;
      }
      begin_ = scan_ = static_cast<size_t>(nl - buf_.data()) + 1;
      skipping_ = false;
    }
    const char* nl = static_cast<const char*>(std::memchr(&buf_[scan_], '\n', end_ - scan_));
    if (nl != nullptr) {
      size_t pos = static_cast<size_t>(nl - buf_.data());
      bool too_long = pos - begin_ > max_line_;
      Yield(line, begin_, too_long ? max_line_ + 1 : pos - begin_, too_long);
      begin_ = scan_ = pos + 1;
      return true;
    }
    scan_ = end_;
    if (end_ - begin_ > max_line_) {
      Yield(line, begin_, max_line_ + 1, true);
      begin_ = scan_ = end_;
      skipping_ = true;
      return true;
    }
    return false;
  }

  // At the end of the input: the last line if it has no "\n".
  bool TakeRest(Line* line) {
    if (skipping_ || begin_ == end_) return false;
    Yield(line, begin_, end_ - begin_, false);
    begin_ = scan_ = end_;
    return true;
  }

  // Room for at least one chunk of new bytes (moves pending bytes to the front).
  std::span<char> Space() {
    if (begin_ > 0) {
      std::memmove(buf_.data(), &buf_[begin_], end_ - begin_);
      end_ -= begin_;
      scan_ -= begin_;
      begin_ = 0;
    }
    return std::span<char>(buf_).subspan(end_);
  }
  void Commit(size_t n) { end_ += n; }

  // Reads once from `fd` into Space(). Returns bytes read (0 at end of file).
  StatusOr<size_t> ReadFrom(int fd, std::string_view origin) {
    std::span<char> space = Space();
    while (true) {
      ssize_t n = ::read(fd, space.data(), space.size());
      if (n >= 0) {
        Commit(static_cast<size_t>(n));
        return static_cast<size_t>(n);
      }
      if (errno == EINTR) continue;
      return UnavailableError("read " + std::string(origin) + ": " + std::strerror(errno));
    }
  }

 private:
  void Yield(Line* line, size_t begin, size_t size, bool truncated) {
    line->text = std::string_view(&buf_[begin], size);
    line->line_number = ++line_number_;
    line->truncated = truncated;
  }

  const size_t chunk_;
  const size_t max_line_;
  std::vector<char> buf_;
  size_t begin_ = 0;  // first byte of the pending line
  size_t scan_ = 0;   // bytes before this were searched for "\n"
  size_t end_ = 0;    // end of valid bytes
  bool skipping_ = false;
  uint64_t line_number_ = 0;
};

}  // namespace internal

namespace {

// Waits until `fd` (or the waker) is readable or timeout_ms passes (-1: no limit).
// Returns false if woken by the waker or an error other than EINTR.
bool WaitReadable(int fd, Waker& waker, int timeout_ms) {
  pollfd fds[2] = {{fd, POLLIN, 0}, {waker.fd(), POLLIN, 0}};
  int r = ::poll(fds, 2, timeout_ms);
  if (r < 0 && errno != EINTR) {
    PLOG(WARNING) << "poll";
  }
  if (r > 0 && (fds[1].revents & POLLIN)) {
    waker.Drain();
    return false;
  }
  return true;
}

}  // namespace

// ---------------------------------------------------------------- FileListSource

StatusOr<std::unique_ptr<FileListSource>> FileListSource::Open(
    const std::vector<std::string>& paths, SourceOptions options) {
  namespace fs = std::filesystem;
  std::vector<std::string> files;
  for (const std::string& path : paths) {
    std::error_code ec;
    fs::file_status st = fs::status(path, ec);
    if (ec || !fs::exists(st)) {
      return NotFoundError("input path " + path + " does not exist" +
                           (ec ? ": " + ec.message() : ""));
    }
    if (!fs::is_directory(st)) {
      files.push_back(path);
      continue;
    }
    std::vector<std::string> entries;
    for (fs::directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
      std::string name = it->path().filename().string();
      if (name.empty() || name[0] == '.') continue;
      entries.push_back(it->path().string());
    }
    if (ec) return UnavailableError("cannot list directory " + path + ": " + ec.message());
    std::sort(entries.begin(), entries.end());
    files.insert(files.end(), entries.begin(), entries.end());
  }
  return std::unique_ptr<FileListSource>(new FileListSource(std::move(files), options));
}

FileListSource::FileListSource(std::vector<std::string> files, SourceOptions options)
    : files_(std::move(files)), reader_(std::make_unique<internal::LineReader>(options)) {}

FileListSource::~FileListSource() {
  if (fd_ >= 0) ::close(fd_);
}

StatusOr<bool> FileListSource::Next(Line* line) {
  while (true) {
    if (fd_ < 0) {
      if (next_file_ >= files_.size()) return false;
      current_ = next_file_++;
      const std::string& path = files_[current_];
      int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        PLOG(WARNING) << "skipping input file " << path;
        ++skipped_;
        continue;
      }
      struct stat st;
      if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        LOG(WARNING) << "skipping input " << path << ": not a file";
        ::close(fd);
        ++skipped_;
        continue;
      }
      fd_ = fd;
      eof_ = false;
      reader_->Reset();
    }
    if (reader_->TakeLine(line) || (eof_ && reader_->TakeRest(line))) {
      line->origin = files_[current_];
      return true;
    }
    if (eof_) {
      ::close(fd_);
      fd_ = -1;
      continue;
    }
    StatusOr<size_t> n = reader_->ReadFrom(fd_, files_[current_]);
    if (!n.ok()) {
      LOG(WARNING) << "skipping the rest of input file: " << n.status();
      ++skipped_;
      ::close(fd_);
      fd_ = -1;
      continue;
    }
    if (*n == 0) eof_ = true;
  }
}

// -------------------------------------------------------------- FollowFileSource

StatusOr<std::unique_ptr<FollowFileSource>> FollowFileSource::Open(const std::string& path,
                                                                   SourceOptions options) {
  int inotify_fd = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd < 0)
    return UnavailableError(std::string("inotify_init1: ") + std::strerror(errno));
  // Watch before the first read, so no append after it can go unnoticed.
  if (::inotify_add_watch(inotify_fd, path.c_str(), IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB) < 0) {
    int err = errno;
    ::close(inotify_fd);
    std::string message = "cannot follow " + path + ": " + std::strerror(err);
    return err == ENOENT ? NotFoundError(message) : UnavailableError(message);
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int err = errno;
    ::close(inotify_fd);
    std::string message = "cannot open " + path + ": " + std::strerror(err);
    return err == ENOENT ? NotFoundError(message) : UnavailableError(message);
  }
  return std::unique_ptr<FollowFileSource>(new FollowFileSource(path, fd, inotify_fd, options));
}

FollowFileSource::FollowFileSource(std::string path, int fd, int inotify_fd, SourceOptions options)
    : path_(std::move(path)),
      fd_(fd),
      inotify_fd_(inotify_fd),
      options_(options),
      reader_(std::make_unique<internal::LineReader>(options)) {}

FollowFileSource::~FollowFileSource() {
  ::close(fd_);
  ::close(inotify_fd_);
}

void FollowFileSource::RequestStop() {
  stop_.store(true, std::memory_order_relaxed);
  waker_.Notify();
}

StatusOr<bool> FollowFileSource::Next(Line* line) {
  while (true) {
    if (reader_->TakeLine(line)) {
      line->origin = path_;
      return true;
    }
    ASSIGN_OR_RETURN(size_t n, reader_->ReadFrom(fd_, path_));
    if (n > 0) {
      offset_ += n;
      continue;
    }
    struct stat st;
    if (::fstat(fd_, &st) == 0 && static_cast<uint64_t>(st.st_size) < offset_) {
      LOG(WARNING) << path_ << " shrank from " << offset_ << " to " << st.st_size
                   << " bytes; reading it from the start";
      if (::lseek(fd_, 0, SEEK_SET) < 0)
        return UnavailableError("lseek " + path_ + ": " + std::strerror(errno));
      offset_ = 0;
      reader_->Reset();
      continue;
    }
    if (stop_.load(std::memory_order_relaxed)) return false;
    if (WaitReadable(inotify_fd_, waker_, options_.follow_wait_ms)) {
      alignas(inotify_event) char events[4096];
      while (::read(inotify_fd_, events, sizeof(events)) > 0) {
      }
    }
  }
}

// ---------------------------------------------------------------------- FdSource

FdSource::FdSource(int fd, std::string origin, SourceOptions options)
    : fd_(fd),
      origin_(std::move(origin)),
      reader_(std::make_unique<internal::LineReader>(options)) {}

FdSource::~FdSource() = default;

void FdSource::RequestStop() {
  stop_.store(true, std::memory_order_relaxed);
  waker_.Notify();
}

StatusOr<bool> FdSource::Next(Line* line) {
  while (true) {
    if (reader_->TakeLine(line) || (eof_ && reader_->TakeRest(line))) {
      line->origin = origin_;
      return true;
    }
    if (eof_ || stop_.load(std::memory_order_relaxed)) return false;
    if (!WaitReadable(fd_, waker_, -1)) continue;  // woken: re-check stop_
    ASSIGN_OR_RETURN(size_t n, reader_->ReadFrom(fd_, origin_));
    if (n == 0) eof_ = true;
  }
}

// ----------------------------------------------------------------- ZmqPullSource

StatusOr<std::unique_ptr<ZmqPullSource>> ZmqPullSource::Create(zmq::context_t& context,
                                                               const std::string& endpoint,
                                                               bool bind, SourceOptions options) {
  try {
    zmq::socket_t socket(context, zmq::socket_type::pull);
    socket.set(zmq::sockopt::linger, 0);
    std::string actual = endpoint;
    if (bind) {
      socket.bind(endpoint);
      actual = socket.get(zmq::sockopt::last_endpoint);
    } else {
      socket.connect(endpoint);
    }
    return std::unique_ptr<ZmqPullSource>(
        new ZmqPullSource(std::move(socket), std::move(actual), options));
  } catch (const zmq::error_t& e) {
    return UnavailableError("ZeroMQ PULL source on " + endpoint + ": " + e.what());
  }
}

ZmqPullSource::ZmqPullSource(zmq::socket_t socket, std::string endpoint, SourceOptions options)
    : socket_(std::move(socket)), endpoint_(std::move(endpoint)), options_(options) {
  // A message wins over a stop request that came at the same time.
  loop_.AddSocket(socket_, [this] {
    try {
      if (!socket_.recv(message_, zmq::recv_flags::dontwait)) return;
    } catch (const zmq::error_t& e) {
      return loop_.Exit(UnavailableError(e.what()));
    }
    received_ = true;
    loop_.Exit(OkStatus());
  });
  loop_.AddWaker(waker_, [this] { loop_.Exit(OkStatus()); });  // re-check stop_
}

ZmqPullSource::~ZmqPullSource() = default;

void ZmqPullSource::RequestStop() {
  stop_.store(true, std::memory_order_relaxed);
  waker_.Notify();
}

StatusOr<bool> ZmqPullSource::Next(Line* line) {
  while (!ended_) {
    if (stop_.load(std::memory_order_relaxed)) return false;
    received_ = false;
    Status s = loop_.Run();
    if (!s.ok()) return s.WithContext("ZeroMQ PULL source on " + endpoint_);
    if (!received_) continue;
    if (message_.size() == 0) {
      ended_ = true;
      break;
    }
    std::string_view text = message_.to_string_view();
    if (!text.empty() && text.back() == '\n') text.remove_suffix(1);
    line->truncated = text.size() > options_.max_line_bytes;
    if (line->truncated) text = text.substr(0, options_.max_line_bytes + 1);
    line->text = text;
    line->origin = endpoint_;
    line->line_number = ++messages_;
    return true;
  }
  return false;
}

// ----------------------------------------------------------------- ShardedSource

ShardedSource::ShardedSource(std::unique_ptr<LineSource> inner, uint32_t worker,
                             uint32_t num_workers)
    : inner_(std::move(inner)), worker_(worker), num_workers_(num_workers) {
  CHECK_GE(num_workers_, 1u);
  CHECK_LT(worker_, num_workers_);
}

StatusOr<bool> ShardedSource::Next(Line* line) {
  while (true) {
    ASSIGN_OR_RETURN(bool more, inner_->Next(line));
    if (!more) return false;
    if (index_++ % num_workers_ == worker_) return true;
  }
}

}  // namespace eddy::worker
