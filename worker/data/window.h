// SlidingWindow: the rows trained on recently, bounded by count and by age, from
// which experience replay samples older rows to mix into each mini-batch.
// Thread-safety: not thread-safe; owned by the training thread.
#ifndef EDDY_WORKER_DATA_WINDOW_H_
#define EDDY_WORKER_DATA_WINDOW_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <vector>

#include "common/net.h"
#include "common/status.h"
#include "worker/data/row.h"

namespace eddy::worker {

struct WindowOptions {
  uint64_t max_rows = 0;    // keep at most this many rows (0: no row bound)
  double max_seconds = 0;   // keep rows that arrived at most this long ago (0: no time bound)
  double replay_ratio = 0;  // fraction in [0,1) of each mini-batch replayed from older rows
  uint64_t seed = 1;        // replay sampling seed (deterministic)
};

// Returns InvalidArgument, naming the flag (--window_rows, --window_seconds,
// --replay_ratio), if max_seconds is negative, NaN or infinite, if replay_ratio is
// outside [0, 1) (or NaN), or if replay_ratio > 0 with neither bound set (the
// window's memory must be bounded). OK otherwise.
[[nodiscard]] Status ValidateWindowOptions(const WindowOptions& options);

// Holds copies of the rows added, if options.replay_ratio > 0 (otherwise nothing:
// rows are trained once, on entry, and dropped). The oldest rows are evicted, one
// row at a time, so that at no time more than max_rows rows are held, and none
// that arrived more than max_seconds before the last `now` seen.
//
// Rows live in fixed-capacity chunks (flat ExampleBatches) that are recycled once
// all their rows are evicted, so Add is amortized O(row size) and allocates nothing
// in the steady state; a sampled row is found in O(1).
class SlidingWindow {
 public:
  // Requires ValidateWindowOptions(options).ok().
  SlidingWindow(WindowOptions options, uint32_t dense_dim);
  SlidingWindow(const SlidingWindow&) = delete;
  SlidingWindow& operator=(const SlidingWindow&) = delete;

  // Adds rows that have just been trained on, arrived at `now`, then evicts the
  // oldest rows until both bounds hold (rows of `rows` beyond the last max_rows
  // are not stored and count as evicted). Requires rows.dense_dim == dense_dim and
  // `now` not earlier than in previous calls.
  void Add(const ExampleBatch& rows, SteadyClock::time_point now);
  // Evicts the rows that arrived more than max_seconds before `now` (no-op
  // without a time bound). Add calls it too.
  void Expire(SteadyClock::time_point now);

  // How many replayed rows go with `fresh` fresh rows, so that they make a
  // fraction replay_ratio of the mini-batch: round(fresh * r / (1 - r)), capped
  // by size().
  size_t ReplayCount(size_t fresh) const;
  // Appends `n` rows sampled uniformly, with replacement, from the rows held, to
  // `out`. Requires out->dense_dim == dense_dim, and size() > 0 unless n == 0.
  void SampleReplay(size_t n, ExampleBatch* out);

  // Rows held.
  size_t size() const { return static_cast<size_t>(tail_ - head_); }
  // Approximate bytes of the rows held (their labels, features, dense inputs).
  size_t bytes() const { return bytes_; }
  // Rows evicted so far.
  uint64_t evicted() const { return evicted_; }
  // Rows handed out by SampleReplay so far.
  uint64_t replayed() const { return replayed_; }

 private:
  // Stores rows [begin, end) of `rows` after the newest row held.
  void Append(const ExampleBatch& rows, size_t begin, size_t end);
  // Evicts every row held whose sequence number is below `seq`.
  void EvictBefore(uint64_t seq);
  // A uniform random number in [0, n).
  uint64_t Uniform(uint64_t n);

  // Rows added at one time: sequence numbers below end_seq (and at or above the
  // previous Arrival's end_seq) arrived at `time`.
  struct Arrival {
    uint64_t end_seq;
    SteadyClock::time_point time;
  };

  const WindowOptions options_;
  const uint32_t dense_dim_;
  const uint64_t chunk_rows_;            // rows per chunk
  const SteadyClock::duration max_age_;  // max_seconds as a duration

  // Every row stored gets the next sequence number; the row with number s is row
  // s % chunk_rows_ of chunk number s / chunk_rows_, and chunks_[i] is chunk
  // number first_chunk_ + i. Rows below head_ may still be stored in the front
  // chunk but are evicted.
  std::deque<ExampleBatch> chunks_;
  uint64_t first_chunk_ = 0;
  uint64_t head_ = 0;                       // sequence number of the oldest row held
  uint64_t tail_ = 0;                       // sequence number of the next row stored
  std::vector<ExampleBatch> spare_chunks_;  // emptied chunks, kept for reuse
  std::deque<Arrival> arrivals_;            // oldest first; every end_seq > head_

  size_t bytes_ = 0;
  uint64_t evicted_ = 0;
  uint64_t replayed_ = 0;
  uint64_t rng_state_;
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_DATA_WINDOW_H_
