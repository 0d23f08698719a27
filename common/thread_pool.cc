#include "common/thread_pool.h"

namespace eddy {

ThreadPool::ThreadPool(int num_threads) {
  for (int i = 1; i < num_threads; ++i) {
    threads_.emplace_back([this](std::stop_token st) { WorkerLoop(st); });
  }
}

ThreadPool::~ThreadPool() {
  for (auto& t : threads_) t.request_stop();
  start_cv_.notify_all();
  threads_.clear();  // joins
}

void ThreadPool::RunTasks() {
  const std::function<void(size_t)>* fn;
  size_t n;
  {
    std::lock_guard lock(mu_);
    fn = fn_;
    n = n_;
  }
  for (size_t i = next_.fetch_add(1); i < n; i = next_.fetch_add(1)) (*fn)(i);
}

void ThreadPool::WorkerLoop(std::stop_token stop) {
  uint64_t seen = 0;
  while (true) {
    {
      std::unique_lock lock(mu_);
      if (!start_cv_.wait(lock, stop, [&] { return generation_ != seen; })) return;
      seen = generation_;
    }
    RunTasks();
    {
      std::lock_guard lock(mu_);
      if (--active_ == 0) done_cv_.notify_one();
    }
  }
}

void ThreadPool::ParallelFor(size_t n, const std::function<void(size_t)>& fn) {
  if (n == 0) return;
  if (threads_.empty() || n == 1) {
    for (size_t i = 0; i < n; ++i) fn(i);
    return;
  }
  std::lock_guard call_lock(call_mu_);
  {
    std::lock_guard lock(mu_);
    fn_ = &fn;
    n_ = n;
    next_.store(0);
    active_ = static_cast<int>(threads_.size());
    ++generation_;
  }
  start_cv_.notify_all();
  RunTasks();
  std::unique_lock lock(mu_);
  done_cv_.wait(lock, [&] { return active_ == 0; });
  fn_ = nullptr;
}

}  // namespace eddy
