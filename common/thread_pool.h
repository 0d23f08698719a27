// ThreadPool: a fixed set of threads that run one parallel loop at a time.
// Thread-safety: ParallelFor may be called from any thread; concurrent calls are
// serialised (one loop runs at a time). The calling thread takes part in the loop.
#ifndef EDDY_COMMON_THREAD_POOL_H_
#define EDDY_COMMON_THREAD_POOL_H_

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace eddy {

class ThreadPool {
 public:
  // `num_threads` >= 1 counts the caller: num_threads - 1 threads are started.
  explicit ThreadPool(int num_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(threads_.size()) + 1; }

  // Runs fn(i) for every i in [0, n) and returns when all calls have returned.
  // fn must not call ParallelFor on the same pool.
  void ParallelFor(size_t n, const std::function<void(size_t)>& fn);

 private:
  void WorkerLoop(std::stop_token stop);
  void RunTasks();

  std::mutex call_mu_;  // serialises ParallelFor calls
  std::mutex mu_;
  std::condition_variable_any start_cv_;
  std::condition_variable done_cv_;
  uint64_t generation_ = 0;  // guarded by mu_
  int active_ = 0;           // workers still inside the current loop; guarded by mu_
  const std::function<void(size_t)>* fn_ = nullptr;  // guarded by mu_
  size_t n_ = 0;                                     // guarded by mu_
  std::atomic<size_t> next_{0};
  std::vector<std::jthread> threads_;
};

}  // namespace eddy

#endif  // EDDY_COMMON_THREAD_POOL_H_
