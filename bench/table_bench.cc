// Micro-benchmarks of the server's sparse table on the reference workload: a
// table of 1,000,000 rows (dim 16, AdaGrad, 64 shards), requests of 10,000
// distinct random keys of that vocabulary, applied with a thread pool (the
// argument: 2 threads is the reference, 1 for comparison).
// items/s counts keys; bytes_per_row is the table's MemoryBytes() / size().
#include <benchmark/benchmark.h>

#include <algorithm>
#include <memory>
#include <numeric>
#include <random>
#include <vector>

#include "common/table_config.h"
#include "common/thread_pool.h"
#include "server/embedding_table.h"

namespace eddy::server {
namespace {

constexpr size_t kVocab = 1'000'000;
constexpr size_t kKeysPerRequest = 10'000;
constexpr uint32_t kDim = 16;
constexpr uint32_t kShards = 64;
constexpr size_t kNumRequests = 32;  // distinct requests, cycled through

struct Workload {
  std::unique_ptr<EmbeddingTable> table;
  std::vector<std::vector<uint64_t>> requests;
  std::vector<float> grads;
  std::vector<float> out;
};

// Built once and shared by every benchmark (the table is pre-filled with the
// whole vocabulary).
Workload MakeWorkload() {
  Workload w;
  auto specs = ParseTableSpecs("emb:dim=16,opt=adagrad,lr=0.05,init=normal,init_scale=0.01,seed=7");
  w.table = EmbeddingTable::Create(specs->front(), kShards).value();
  std::mt19937_64 rng(42);
  std::vector<uint64_t> vocab(kVocab);
  for (uint64_t& k : vocab) k = rng();
  std::vector<float> out(kKeysPerRequest * kDim);
  ThreadPool pool(2);
  for (size_t i = 0; i < kVocab; i += kKeysPerRequest) {
    const size_t n = std::min(kKeysPerRequest, kVocab - i);
    w.table->Pull({vocab.data() + i, n}, out.data(), &pool);
  }
  // Distinct keys per request: the first kKeysPerRequest of a partial shuffle.
  std::vector<uint32_t> perm(kVocab);
  std::iota(perm.begin(), perm.end(), 0u);
  for (size_t r = 0; r < kNumRequests; ++r) {
    std::vector<uint64_t> keys(kKeysPerRequest);
    for (size_t i = 0; i < kKeysPerRequest; ++i) {
      std::swap(perm[i], perm[i + rng() % (kVocab - i)]);
      keys[i] = vocab[perm[i]];
    }
    w.requests.push_back(std::move(keys));
  }
  std::normal_distribution<float> normal(0.0f, 0.01f);
  w.grads.resize(kKeysPerRequest * kDim);
  for (float& g : w.grads) g = normal(rng);
  w.out.resize(kKeysPerRequest * kDim);
  return w;
}

Workload& GetWorkload() {
  static Workload w = MakeWorkload();
  return w;
}

void SetCounters(benchmark::State& state, const EmbeddingTable& table) {
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kKeysPerRequest));
  state.counters["bytes_per_row"] =
      static_cast<double>(table.MemoryBytes()) / static_cast<double>(table.size());
  state.counters["payload_bytes_per_row"] = static_cast<double>(table.RowBytes());
  state.counters["rows"] = static_cast<double>(table.size());
}

void BM_TablePull(benchmark::State& state) {
  Workload& w = GetWorkload();
  ThreadPool pool(static_cast<int>(state.range(0)));
  size_t r = 0;
  for (auto _ : state) {
    w.table->Pull(w.requests[r], w.out.data(), &pool);
    benchmark::DoNotOptimize(w.out.data());
    benchmark::ClobberMemory();
    r = (r + 1) % kNumRequests;
  }
  SetCounters(state, *w.table);
}

void BM_TablePush(benchmark::State& state) {
  Workload& w = GetWorkload();
  ThreadPool pool(static_cast<int>(state.range(0)));
  size_t r = 0;
  for (auto _ : state) {
    w.table->Push(w.requests[r], w.grads.data(), &pool);
    benchmark::ClobberMemory();
    r = (r + 1) % kNumRequests;
  }
  SetCounters(state, *w.table);
}

void BM_TablePushPull(benchmark::State& state) {
  Workload& w = GetWorkload();
  ThreadPool pool(static_cast<int>(state.range(0)));
  size_t r = 0;
  for (auto _ : state) {
    w.table->PushPull(w.requests[r], w.grads.data(), w.out.data(), &pool);
    benchmark::DoNotOptimize(w.out.data());
    benchmark::ClobberMemory();
    r = (r + 1) % kNumRequests;
  }
  SetCounters(state, *w.table);
}

double Min(const std::vector<double>& v) { return *std::min_element(v.begin(), v.end()); }

// Real time: the work runs on the pool's threads as well as the caller. With
// --benchmark_repetitions, "min" is the figure least disturbed by other load.
#define EDDY_TABLE_BENCHMARK(fn)      \
  BENCHMARK(fn)                       \
      ->ArgName("threads")            \
      ->Arg(2)                        \
      ->Arg(1)                        \
      ->UseRealTime()                 \
      ->Unit(benchmark::kMicrosecond) \
      ->ComputeStatistics("min", Min)
EDDY_TABLE_BENCHMARK(BM_TablePull);
EDDY_TABLE_BENCHMARK(BM_TablePush);
EDDY_TABLE_BENCHMARK(BM_TablePushPull);

}  // namespace
}  // namespace eddy::server

BENCHMARK_MAIN();
