// ParsedStream: reads a LineSource and parses its rows on a thread of its own,
// handing batches of parsed examples to training through a bounded queue, so
// training does not wait on parsing as long as parsing keeps up on average.
// Thread-safety: NextBatch() is for one consumer thread; Stop(), rows() and
// bad_rows() may be called from any thread.
#ifndef EDDY_WORKER_DATA_PARSED_STREAM_H_
#define EDDY_WORKER_DATA_PARSED_STREAM_H_

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <thread>

#include "common/status.h"
#include "worker/data/error_budget.h"
#include "worker/data/parser.h"
#include "worker/data/row.h"
#include "worker/data/source.h"

namespace eddy::worker {

struct ParsedStreamOptions {
  size_t batch_size = 1024;  // rows per ExampleBatch (the last one may be shorter)
  size_t queue_depth = 4;    // batches parsed ahead of the consumer
  ErrorBudgetOptions budget;
};

class ParsedStream {
 public:
  // Starts the parser thread at once. Bad rows are counted by an ErrorBudget and
  // skipped; truncated lines count as RowError::kTooLong.
  ParsedStream(std::unique_ptr<LineSource> source, std::unique_ptr<Parser> parser,
               ParsedStreamOptions options = {});
  // Stops the thread (waking a waiting source) and joins it.
  ~ParsedStream();
  ParsedStream(const ParsedStream&) = delete;
  ParsedStream& operator=(const ParsedStream&) = delete;

  // Blocks until a batch is ready. Returns the next batch; nullopt at the end of
  // the stream (or after Stop() once queued batches are taken); or, after the
  // batches parsed before it, the error that ended the stream: the error
  // budget's (DataLoss) or the source's.
  StatusOr<std::optional<ExampleBatch>> NextBatch();
  // Waits up to `timeout` until NextBatch() would not block (a batch is queued,
  // or the stream ended); returns whether it would not. For callers that have
  // other things to do while a live stream is quiet.
  bool WaitReady(std::chrono::milliseconds timeout);
  // Asks the parser thread to stop; NextBatch() then returns nullopt soon.
  void Stop();

  // Rows read so far (good + bad) and bad rows among them.
  uint64_t rows() const { return rows_.load(std::memory_order_relaxed); }
  uint64_t bad_rows() const { return bad_rows_.load(std::memory_order_relaxed); }

 private:
  void Run(std::stop_token stop);
  // Queues `batch`, waiting for room; false if stopped first.
  bool Push(ExampleBatch batch, std::stop_token stop);
  ExampleBatch NewBatch() const;

  const std::unique_ptr<LineSource> source_;
  const std::unique_ptr<Parser> parser_;
  const ParsedStreamOptions options_;
  std::atomic<uint64_t> rows_{0};
  std::atomic<uint64_t> bad_rows_{0};

  std::mutex mu_;
  std::condition_variable_any cv_;  // queue_ changed or done_ set
  std::deque<ExampleBatch> queue_;  // GUARDED_BY(mu_)
  bool done_ = false;               // GUARDED_BY(mu_): the thread has finished
  Status status_;                   // GUARDED_BY(mu_): why it finished

  std::jthread thread_;  // last: started after every other member exists
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_DATA_PARSED_STREAM_H_
