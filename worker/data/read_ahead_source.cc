#include "worker/data/read_ahead_source.h"

#include <algorithm>
#include <utility>

namespace eddy::worker {

ReadAheadSource::ReadAheadSource(std::unique_ptr<LineSource> inner, size_t chunk_lines,
                                 size_t chunks)
    : inner_(std::move(inner)),
      chunk_lines_(std::max<size_t>(1, chunk_lines)),
      max_chunks_(std::max<size_t>(1, chunks)),
      thread_([this](std::stop_token stop) { Run(stop); }) {}

ReadAheadSource::~ReadAheadSource() {
  RequestStop();
  thread_.request_stop();
  thread_.join();
}

void ReadAheadSource::RequestStop() {
  {
    MutexLock lock(&mu_);
    stopped_ = true;
  }
  cv_.NotifyAll();
  inner_->RequestStop();
}

void ReadAheadSource::Run(std::stop_token stop) {
  Status status;
  Chunk chunk;
  Line line;
  // Hands `chunk` over, waiting for room; false once stopped.
  auto hand_over = [&]() -> bool {
    MutexLock lock(&mu_);
    while (chunks_.size() >= max_chunks_ && !stopped_) cv_.Wait(&mu_);
    if (stopped_) return false;
    chunks_.push_back(std::move(chunk));
    chunk = Chunk();
    cv_.NotifyAll();
    return true;
  };
  while (!stop.stop_requested()) {
    StatusOr<bool> more = inner_->Next(&line);
    if (!more.ok()) {
      status = more.status();
      break;
    }
    if (!*more) break;
    Chunk::Entry e{chunk.text.size(), line.text.size(), chunk.origins.size(), 0,
                   line.line_number, line.truncated, line.row_origin};
    chunk.text.append(line.text);
    // Consecutive lines mostly share their origin (a file, a partition).
    if (!chunk.lines.empty()) {
      const Chunk::Entry& last = chunk.lines.back();
      if (std::string_view(chunk.origins).substr(last.origin_begin, last.origin_size) ==
          line.origin) {
        e.origin_begin = last.origin_begin;
        e.origin_size = last.origin_size;
      }
    }
    if (e.origin_size == 0 && !line.origin.empty()) {
      e.origin_begin = chunk.origins.size();
      e.origin_size = line.origin.size();
      chunk.origins.append(line.origin);
    }
    chunk.lines.push_back(e);
    if (chunk.lines.size() >= chunk_lines_ && !hand_over()) return;
  }
  if (!chunk.lines.empty() && !hand_over()) return;
  MutexLock lock(&mu_);
  done_ = true;
  status_ = std::move(status);
  cv_.NotifyAll();
}

StatusOr<bool> ReadAheadSource::Next(Line* line) {
  if (next_ >= current_.lines.size()) {
    MutexLock lock(&mu_);
    while (chunks_.empty() && !done_ && !stopped_) cv_.Wait(&mu_);
    if (chunks_.empty()) {
      if (stopped_) return false;
      if (!status_.ok()) return status_;
      return false;
    }
    current_ = std::move(chunks_.front());
    chunks_.pop_front();
    next_ = 0;
    cv_.NotifyAll();
  }
  const Chunk::Entry& e = current_.lines[next_++];
  line->text = std::string_view(current_.text).substr(e.text_begin, e.text_size);
  line->origin = std::string_view(current_.origins).substr(e.origin_begin, e.origin_size);
  line->line_number = e.line_number;
  line->truncated = e.truncated;
  line->row_origin = e.row_origin;
  return true;
}

}  // namespace eddy::worker
