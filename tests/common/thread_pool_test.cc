#include "common/thread_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <set>
#include <thread>
#include <vector>

namespace eddy {
namespace {

// Calls ParallelFor(n) and checks every index ran exactly once.
void ExpectEachIndexOnce(ThreadPool& pool, size_t n) {
  std::unique_ptr<std::atomic<int>[]> hits(new std::atomic<int>[n + 1]);
  for (size_t i = 0; i <= n; ++i) hits[i] = 0;
  pool.ParallelFor(n, [&](size_t i) {
    ASSERT_LT(i, n);
    hits[i].fetch_add(1);
  });
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "index " << i << " of " << n;
}

TEST(ThreadPoolTest, EveryIndexRunsExactlyOnce) {
  for (int threads : {1, 2, 4}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.num_threads(), threads);
    for (size_t n : {0, 1, 2, 3, 7, 100, 10000}) ExpectEachIndexOnce(pool, n);
  }
}

TEST(ThreadPoolTest, ZeroIterationsCallNothing) {
  ThreadPool pool(2);
  bool called = false;
  pool.ParallelFor(0, [&](size_t) { called = true; });
  EXPECT_FALSE(called);
}

TEST(ThreadPoolTest, OneThreadRunsOnTheCaller) {
  ThreadPool pool(1);
  const auto caller = std::this_thread::get_id();
  std::set<std::thread::id> ids;
  pool.ParallelFor(50, [&](size_t) { ids.insert(std::this_thread::get_id()); });
  EXPECT_EQ(ids, std::set<std::thread::id>{caller});
}

TEST(ThreadPoolTest, ReturnsOnlyAfterAllCallsReturned) {
  ThreadPool pool(3);
  for (int round = 0; round < 200; ++round) {
    std::atomic<int> done{0};
    pool.ParallelFor(16, [&](size_t i) {
      // Some work of varying length.
      volatile uint64_t x = 0;
      for (size_t k = 0; k < 1000 * (i % 4); ++k) x = x + k;
      done.fetch_add(1);
    });
    ASSERT_EQ(done.load(), 16);
  }
}

TEST(ThreadPoolTest, ConcurrentCallersAreSerialisedCorrectly) {
  ThreadPool pool(2);
  constexpr int kCallers = 4, kRounds = 100;
  std::atomic<int> inside{0}, max_inside{0};
  std::vector<std::thread> callers;
  std::vector<std::atomic<uint64_t>> sums(kCallers);
  for (int c = 0; c < kCallers; ++c) {
    callers.emplace_back([&, c] {
      for (int r = 0; r < kRounds; ++r) {
        pool.ParallelFor(100, [&](size_t i) {
          const int now = inside.fetch_add(1) + 1;
          int seen = max_inside.load();
          while (now > seen && !max_inside.compare_exchange_weak(seen, now)) {
          }
          sums[c].fetch_add(i);
          inside.fetch_sub(1);
        });
      }
    });
  }
  for (auto& t : callers) t.join();
  for (int c = 0; c < kCallers; ++c) EXPECT_EQ(sums[c].load(), uint64_t{kRounds} * (99 * 100 / 2));
  // One loop at a time: never more calls in flight than threads in the pool.
  EXPECT_LE(max_inside.load(), pool.num_threads());
}

}  // namespace
}  // namespace eddy
