// Line sources: where rows come from. A LineSource yields text lines (without
// "\n") in arrival order from a file, a list of files or a directory, a file that
// keeps growing (follow mode), a file descriptor such as stdin, or a ZeroMQ PULL
// socket; ShardedSource splits a stream between workers.
// Thread-safety: Next() is called by one thread at a time (the owner);
// RequestStop() may be called from any thread.
#ifndef EDDY_WORKER_DATA_SOURCE_H_
#define EDDY_WORKER_DATA_SOURCE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/event_loop.h"
#include "common/net.h"
#include "common/status.h"
#include "worker/data/stream_position.h"

namespace eddy::worker {

namespace internal {
class LineReader;  // buffered line splitting, in source.cc
}  // namespace internal

// One line. text and origin are views into the source, valid until the next call
// to Next() or the source's destruction.
struct Line {
  std::string_view text;     // without "\n" ("\r", if any, is left to the parser)
  std::string_view origin;   // file name, "<stdin>", or the ZeroMQ endpoint
  uint64_t line_number = 0;  // 1-based within origin (ZeroMQ: message number)
  // The line was longer than SourceOptions::max_line_bytes: text holds only its
  // first max_line_bytes + 1 bytes (the rest was discarded), so a parser with the
  // same limit rejects it as too long.
  bool truncated = false;
  // Partitioned streams (Kafka): the row's partition, message offset and so on;
  // partition < 0 for every other source.
  RowOrigin row_origin;
};

struct SourceOptions {
  size_t read_bytes = size_t{1} << 20;      // size of each read(2)
  size_t max_line_bytes = size_t{1} << 20;  // longer lines are truncated (see Line)
  // Follow mode: longest wait for an inotify event before re-checking the file
  // (the wait also ends at once on RequestStop()).
  int follow_wait_ms = 1000;
};

class LineSource {
 public:
  virtual ~LineSource() = default;
  // Fills *line and returns true, returns false at the end of the stream (or
  // after RequestStop() for sources that would otherwise wait), or an error.
  virtual StatusOr<bool> Next(Line* line) = 0;
  // Makes a waiting Next() return false promptly. Any thread.
  virtual void RequestStop() {}
};

// The files in `paths`, in the order given; a directory stands for the entries
// directly inside it, in byte-wise name order (names starting with '.' skipped).
// Errors: NotFound if a top-level path does not exist. A file that cannot be
// opened or is not a regular file when its turn comes (a broken symlink, a
// subdirectory, a file removed meanwhile) is logged, counted in skipped_files()
// and skipped. Empty files give no lines.
class FileListSource final : public LineSource {
 public:
  static StatusOr<std::unique_ptr<FileListSource>> Open(const std::vector<std::string>& paths,
                                                        SourceOptions options = {});
  ~FileListSource() override;
  StatusOr<bool> Next(Line* line) override;
  uint64_t skipped_files() const { return skipped_; }
  const std::vector<std::string>& files() const { return files_; }

 private:
  FileListSource(std::vector<std::string> files, SourceOptions options);
  std::vector<std::string> files_;
  size_t next_file_ = 0;
  size_t current_ = 0;  // index in files_ of fd_
  int fd_ = -1;
  bool eof_ = false;
  uint64_t skipped_ = 0;
  std::unique_ptr<internal::LineReader> reader_;
};

// Like `tail -f`: reads `path` from the start, then waits (inotify, up to
// follow_wait_ms at a time) for it to grow and yields new lines as they are
// completed. A partial last line is held back until its "\n" arrives. Returns
// false only after RequestStop(). If the file shrinks (truncated or rotated by
// copy-truncate) it is read again from the start; a file replaced by rename is
// not reopened (the old inode is followed). Errors: NotFound if missing.
class FollowFileSource final : public LineSource {
 public:
  static StatusOr<std::unique_ptr<FollowFileSource>> Open(const std::string& path,
                                                          SourceOptions options = {});
  ~FollowFileSource() override;
  StatusOr<bool> Next(Line* line) override;
  void RequestStop() override;

 private:
  FollowFileSource(std::string path, int fd, int inotify_fd, SourceOptions options);
  const std::string path_;
  const int fd_;
  const int inotify_fd_;
  const SourceOptions options_;
  std::unique_ptr<internal::LineReader> reader_;
  uint64_t offset_ = 0;  // bytes read from fd_
  std::atomic<bool> stop_{false};
  Waker waker_;
};

// Lines read from a file descriptor that is not owned (stdin by default, or a
// pipe). Waits with poll(2), so RequestStop() interrupts a read that blocks.
class FdSource final : public LineSource {
 public:
  explicit FdSource(int fd = 0, std::string origin = "<stdin>", SourceOptions options = {});
  ~FdSource() override;
  StatusOr<bool> Next(Line* line) override;
  void RequestStop() override;

 private:
  const int fd_;
  const std::string origin_;
  std::unique_ptr<internal::LineReader> reader_;
  bool eof_ = false;
  std::atomic<bool> stop_{false};
  Waker waker_;
};

// Rows from a ZeroMQ PULL socket. Protocol: each message is one row, in the same
// text format as a file line (a trailing "\n" or "\r\n" is allowed and ignored);
// a multipart message gives one row per part; an empty message ends the stream.
// The socket binds (e.g. "tcp://127.0.0.1:*", see endpoint()) or connects to
// `endpoint`. The socket is used only by the thread calling Next() (it may move
// to that thread after construction). Errors: zmq errors become Unavailable.
class ZmqPullSource final : public LineSource {
 public:
  static StatusOr<std::unique_ptr<ZmqPullSource>> Create(zmq::context_t& context,
                                                         const std::string& endpoint, bool bind,
                                                         SourceOptions options = {});
  ~ZmqPullSource() override;
  StatusOr<bool> Next(Line* line) override;
  void RequestStop() override;
  // The endpoint actually bound or connected ("tcp://127.0.0.1:41235").
  const std::string& endpoint() const { return endpoint_; }

 private:
  ZmqPullSource(zmq::socket_t socket, std::string endpoint, SourceOptions options);
  zmq::socket_t socket_;
  const std::string endpoint_;
  const SourceOptions options_;
  zmq::message_t message_;
  uint64_t messages_ = 0;
  bool ended_ = false;
  std::atomic<bool> stop_{false};
  Waker waker_;
  bool received_ = false;  // set by loop_'s socket handler
  EventLoop loop_{std::chrono::hours(1)};
};

// Worker k of W: passes on the rows whose global row index i (0-based position
// in `inner`'s stream, counting every line, good or bad) has i % W == k and
// drops the others. If every worker reads the same stream (same files in the same
// order) with its own k, each row goes to exactly one worker per pass.
class ShardedSource final : public LineSource {
 public:
  // Requires num_workers >= 1 and worker < num_workers.
  ShardedSource(std::unique_ptr<LineSource> inner, uint32_t worker, uint32_t num_workers);
  StatusOr<bool> Next(Line* line) override;
  void RequestStop() override { inner_->RequestStop(); }

 private:
  std::unique_ptr<LineSource> inner_;
  const uint32_t worker_;
  const uint32_t num_workers_;
  uint64_t index_ = 0;  // global index of the next line of inner_
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_DATA_SOURCE_H_
