#include "worker/data/parsed_stream.h"

#include <string>
#include <utility>

namespace eddy::worker {

ParsedStream::ParsedStream(std::unique_ptr<LineSource> source, std::unique_ptr<Parser> parser,
                           ParsedStreamOptions options)
    : source_(std::move(source)), parser_(std::move(parser)), options_(std::move(options)) {
  CHECK(source_ != nullptr);
  CHECK(parser_ != nullptr);
  CHECK_GE(options_.batch_size, 1u);
  CHECK_GE(options_.queue_depth, 1u);
  thread_ = std::jthread([this](std::stop_token stop) { Run(stop); });
}

ParsedStream::~ParsedStream() {
  Stop();
  thread_.join();
}

void ParsedStream::Stop() { thread_.request_stop(); }

ExampleBatch ParsedStream::NewBatch() const {
  ExampleBatch batch;
  batch.dense_dim = parser_->dense_dim();
  batch.labels.reserve(options_.batch_size);
  batch.offsets.reserve(options_.batch_size + 1);
  batch.dense.reserve(options_.batch_size * batch.dense_dim);
  return batch;
}

bool ParsedStream::Push(ExampleBatch batch, std::stop_token stop) {
  std::unique_lock lock(mu_);
  if (!cv_.wait(lock, stop, [&] { return queue_.size() < options_.queue_depth; })) return false;
  queue_.push_back(std::move(batch));
  cv_.notify_all();
  return true;
}

void ParsedStream::Run(std::stop_token stop) {
  // Wakes a source waiting for data (follow mode, a pipe, a socket).
  std::stop_callback wake(stop, [this] { source_->RequestStop(); });
  ErrorBudget budget(options_.budget);
  Example example;
  ExampleBatch batch = NewBatch();
  Line line;
  Status status;
  while (!stop.stop_requested()) {
    StatusOr<bool> more = source_->Next(&line);
    if (!more.ok()) {
      status = more.status();
      break;
    }
    if (!*more) {
      status = budget.Finish();
      break;
    }
    Status row =
        line.truncated
            ? RowErrorStatus(RowError::kTooLong,
                             "longer than " + std::to_string(line.text.size() - 1) + " bytes")
            : parser_->Parse(line.text, &example);
    if (row.ok()) {
      budget.RecordGood();
      batch.Append(example);
      if (line.row_origin.partition >= 0) batch.origins.push_back(line.row_origin);
    } else {
      status = budget.RecordBad(row, line.origin, line.line_number);
      bad_rows_.store(budget.bad_rows(), std::memory_order_relaxed);
    }
    rows_.store(budget.rows(), std::memory_order_relaxed);
    if (!status.ok()) break;
    if (batch.size() >= options_.batch_size) {
      if (!Push(std::move(batch), stop)) break;
      batch = NewBatch();
    }
  }
  if (!batch.empty()) Push(std::move(batch), stop);
  if (!status.ok()) LOG(ERROR) << "input stream failed: " << status;
  std::lock_guard lock(mu_);
  done_ = true;
  status_ = status;
  cv_.notify_all();
}

StatusOr<std::optional<ExampleBatch>> ParsedStream::NextBatch() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !queue_.empty() || done_; });
  if (!queue_.empty()) {
    std::optional<ExampleBatch> batch(std::move(queue_.front()));
    queue_.pop_front();
    cv_.notify_all();
    return batch;
  }
  if (!status_.ok()) return status_;
  return std::optional<ExampleBatch>();
}

bool ParsedStream::WaitReady(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return !queue_.empty() || done_; });
}

}  // namespace eddy::worker
