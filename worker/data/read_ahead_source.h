// ReadAheadSource: runs another LineSource on a thread of its own and hands its
// lines over in chunks, so reading (e.g. librdkafka's per-message work) and
// parsing (ParsedStream's thread) use two cores instead of one. Lines are
// copied into the chunk; their order, origin, line numbers and RowOrigin are
// kept.
// Thread-safety: Next() is called by one thread at a time (the owner);
// RequestStop() from any thread. The inner source is used by the read-ahead
// thread only.
#ifndef EDDY_WORKER_DATA_READ_AHEAD_SOURCE_H_
#define EDDY_WORKER_DATA_READ_AHEAD_SOURCE_H_

#include <cstddef>
#include <deque>
#include <memory>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"
#include "worker/data/source.h"

namespace eddy::worker {

class ReadAheadSource final : public LineSource {
 public:
  // `chunk_lines` lines per hand-over, at most `chunks` chunks read ahead.
  explicit ReadAheadSource(std::unique_ptr<LineSource> inner, size_t chunk_lines = 1024,
                           size_t chunks = 8);
  // Stops the inner source and joins the thread.
  ~ReadAheadSource() override;
  ReadAheadSource(const ReadAheadSource&) = delete;
  ReadAheadSource& operator=(const ReadAheadSource&) = delete;

  // The inner source's lines in order; false at its end (or after
  // RequestStop()); its error after the lines read before it.
  StatusOr<bool> Next(Line* line) override;
  void RequestStop() override;

 private:
  struct Chunk {
    std::string text;  // the lines' bytes, back to back
    std::string origins;
    struct Entry {
      size_t text_begin, text_size, origin_begin, origin_size;
      uint64_t line_number;
      bool truncated;
      RowOrigin row_origin;
    };
    std::vector<Entry> lines;
  };

  void Run(std::stop_token stop);

  const std::unique_ptr<LineSource> inner_;
  const size_t chunk_lines_;
  const size_t max_chunks_;

  Mutex mu_;
  CondVar cv_;  // chunks_ changed, done_ set, or stop
  std::deque<Chunk> chunks_ GUARDED_BY(mu_);
  bool done_ GUARDED_BY(mu_) = false;
  bool stopped_ GUARDED_BY(mu_) = false;
  Status status_ GUARDED_BY(mu_);

  // Consumer side (the thread calling Next()).
  Chunk current_;
  size_t next_ = 0;

  std::jthread thread_;  // last: started once the members exist
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_DATA_READ_AHEAD_SOURCE_H_
