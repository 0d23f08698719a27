#include "worker/data/window.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>
#include <string>
#include <utility>

namespace eddy::worker {
namespace {

// Chunk capacity: about 1/16 of the row bound, so that the partly evicted front
// chunk and a spare chunk add little memory, within limits that keep the number of
// chunks (and of allocations while the window fills) small.
constexpr uint64_t kMinChunkRows = 64;
constexpr uint64_t kMaxChunkRows = 4096;
// Emptied chunks kept for reuse; more are freed.
constexpr size_t kMaxSpareChunks = 2;

uint64_t ChunkRows(uint64_t max_rows) {
  if (max_rows == 0) return kMaxChunkRows;
  return std::clamp(max_rows / 16, kMinChunkRows, kMaxChunkRows);
}

SteadyClock::duration MaxAge(double max_seconds) {
  using Seconds = std::chrono::duration<double>;
  // Beyond the range of the clock's duration: no row is ever that old.
  if (max_seconds >= std::chrono::duration_cast<Seconds>(SteadyClock::duration::max()).count() / 2)
    return SteadyClock::duration::max();
  return std::chrono::round<SteadyClock::duration>(Seconds(max_seconds));
}

std::string Str(double x) {
  std::ostringstream os;
  os << x;
  return os.str();
}

// Approximate bytes of rows [begin, end) of `batch`.
size_t RowBytes(const ExampleBatch& batch, size_t begin, size_t end) {
  const size_t rows = end - begin;
  const size_t features = batch.offsets[end] - batch.offsets[begin];
  return rows * (sizeof(float) + sizeof(uint32_t) + batch.dense_dim * sizeof(float)) +
         features * (sizeof(uint64_t) + sizeof(uint32_t) + sizeof(float));
}

// Appends rows [begin, end) of `from` to `to` (same dense_dim).
void AppendRows(const ExampleBatch& from, size_t begin, size_t end, ExampleBatch* to) {
  const uint32_t lo = from.offsets[begin];
  const uint32_t hi = from.offsets[end];
  const uint32_t base = static_cast<uint32_t>(to->ids.size());
  to->labels.insert(to->labels.end(), from.labels.begin() + begin, from.labels.begin() + end);
  for (size_t r = begin; r < end; ++r) to->offsets.push_back(base + (from.offsets[r + 1] - lo));
  to->ids.insert(to->ids.end(), from.ids.begin() + lo, from.ids.begin() + hi);
  to->fields.insert(to->fields.end(), from.fields.begin() + lo, from.fields.begin() + hi);
  to->values.insert(to->values.end(), from.values.begin() + lo, from.values.begin() + hi);
  const size_t d = from.dense_dim;
  to->dense.insert(to->dense.end(), from.dense.begin() + begin * d, from.dense.begin() + end * d);
}

}  // namespace

Status ValidateWindowOptions(const WindowOptions& options) {
  if (!std::isfinite(options.max_seconds) || options.max_seconds < 0) {
    return InvalidArgumentError(
        "--window_seconds must be a finite number >= 0 (0: no time bound), got " +
        Str(options.max_seconds));
  }
  if (!(options.replay_ratio >= 0 && options.replay_ratio < 1)) {
    return InvalidArgumentError("--replay_ratio must be in [0, 1), got " +
                                Str(options.replay_ratio));
  }
  if (options.replay_ratio > 0 && options.max_rows == 0 && options.max_seconds == 0) {
    return InvalidArgumentError(
        "--replay_ratio > 0 needs a bounded window: set --window_rows or --window_seconds");
  }
  return OkStatus();
}

SlidingWindow::SlidingWindow(WindowOptions options, uint32_t dense_dim)
    : options_(std::move(options)),
      dense_dim_(dense_dim),
      chunk_rows_(ChunkRows(options_.max_rows)),
      max_age_(MaxAge(options_.max_seconds)),
      rng_state_(options_.seed) {
  const Status status = ValidateWindowOptions(options_);
  CHECK(status.ok()) << status;
}

void SlidingWindow::Add(const ExampleBatch& rows, SteadyClock::time_point now) {
  if (options_.replay_ratio <= 0) return;
  CHECK_EQ(rows.dense_dim, dense_dim_);
  Expire(now);
  size_t begin = 0;
  const size_t end = rows.size();
  if (options_.max_rows > 0) {
    // Rows that would be evicted at once are not stored; room is made before
    // storing, so the bound holds at every moment.
    if (end > options_.max_rows) {
      begin = end - options_.max_rows;
      evicted_ += begin;
    }
    const uint64_t total = size() + (end - begin);
    if (total > options_.max_rows) EvictBefore(head_ + (total - options_.max_rows));
  }
  if (begin == end) return;
  Append(rows, begin, end);
  if (!arrivals_.empty() && arrivals_.back().time == now) {
    arrivals_.back().end_seq = tail_;
  } else {
    arrivals_.push_back({tail_, now});
  }
}

void SlidingWindow::Expire(SteadyClock::time_point now) {
  if (options_.max_seconds <= 0) return;
  while (!arrivals_.empty() && now - arrivals_.front().time > max_age_) {
    EvictBefore(arrivals_.front().end_seq);  // pops the front Arrival
  }
}

size_t SlidingWindow::ReplayCount(size_t fresh) const {
  const double r = options_.replay_ratio;
  if (r <= 0 || fresh == 0) return 0;
  const double want = std::round(static_cast<double>(fresh) * r / (1 - r));
  if (want >= static_cast<double>(size())) return size();
  return static_cast<size_t>(want);
}

void SlidingWindow::SampleReplay(size_t n, ExampleBatch* out) {
  if (n == 0) return;
  CHECK_GT(size(), 0u) << "SampleReplay from an empty window";
  CHECK_EQ(out->dense_dim, dense_dim_);
  for (size_t i = 0; i < n; ++i) {
    const uint64_t seq = head_ + Uniform(size());
    const ExampleBatch& chunk = chunks_[seq / chunk_rows_ - first_chunk_];
    const size_t row = seq % chunk_rows_;
    AppendRows(chunk, row, row + 1, out);
  }
  replayed_ += n;
}

void SlidingWindow::Append(const ExampleBatch& rows, size_t begin, size_t end) {
  bytes_ += RowBytes(rows, begin, end);
  while (begin < end) {
    const uint64_t chunk = tail_ / chunk_rows_;
    if (chunks_.empty()) first_chunk_ = chunk;
    if (chunk - first_chunk_ == chunks_.size()) {
      // tail_ is at the start of a chunk not yet stored.
      if (spare_chunks_.empty()) {
        ExampleBatch fresh;
        fresh.dense_dim = dense_dim_;
        fresh.labels.reserve(chunk_rows_);
        fresh.offsets.reserve(chunk_rows_ + 1);
        fresh.dense.reserve(chunk_rows_ * dense_dim_);
        chunks_.push_back(std::move(fresh));
      } else {
        chunks_.push_back(std::move(spare_chunks_.back()));
        spare_chunks_.pop_back();
      }
    }
    ExampleBatch& to = chunks_.back();
    DCHECK_EQ(to.size(), tail_ % chunk_rows_);
    const size_t take = std::min<uint64_t>(end - begin, chunk_rows_ - tail_ % chunk_rows_);
    AppendRows(rows, begin, begin + take, &to);
    begin += take;
    tail_ += take;
  }
}

void SlidingWindow::EvictBefore(uint64_t seq) {
  seq = std::min(seq, tail_);
  while (head_ < seq) {
    ExampleBatch& front = chunks_.front();
    const uint64_t chunk_begin = first_chunk_ * chunk_rows_;
    const uint64_t chunk_end = chunk_begin + chunk_rows_;
    const uint64_t stop = std::min(seq, chunk_end);
    bytes_ -= RowBytes(front, head_ - chunk_begin, stop - chunk_begin);
    evicted_ += stop - head_;
    head_ = stop;
    if (head_ == chunk_end) {  // every row of the front chunk is evicted
      if (spare_chunks_.size() < kMaxSpareChunks) {
        front.Clear();
        spare_chunks_.push_back(std::move(front));
      }
      chunks_.pop_front();
      ++first_chunk_;
    }
  }
  while (!arrivals_.empty() && arrivals_.front().end_seq <= head_) arrivals_.pop_front();
}

uint64_t SlidingWindow::Uniform(uint64_t n) {
  // SplitMix64, then a multiply-shift into [0, n): the same sequence on every
  // platform (unlike std::uniform_int_distribution), bias below n / 2^64.
  uint64_t z = (rng_state_ += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  z ^= z >> 31;
  return static_cast<uint64_t>((static_cast<unsigned __int128>(z) * n) >> 64);
}

}  // namespace eddy::worker
