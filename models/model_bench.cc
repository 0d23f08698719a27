// Forward+backward throughput (rows/s) of the CTR models at B=1024.
// Threads: oneDNN uses OpenMP here, so set OMP_NUM_THREADS=1 or 2 when running.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "models/ctr_model.h"

namespace eddy::models {
namespace {

constexpr int kBatch = 1024;
constexpr int kFields = 39;
constexpr int kEmbDim = 16;

void RunModel(benchmark::State& state, ModelKind kind) {
  ModelOptions opts;
  opts.kind = kind;
  opts.num_fields = kFields;
  opts.emb_dim = kEmbDim;
  opts.dense_dim = 0;
  opts.hidden = {400, 400, 400};
  auto model_or = CtrModel::Create(opts);
  if (!model_or.ok()) {
    state.SkipWithError(model_or.status().ToString().c_str());
    return;
  }
  CtrModel& model = **model_or;
  const auto& specs = model.dense_params();
  std::vector<std::vector<float>> params(specs.size()), grads(specs.size());
  std::vector<std::span<float>> param_spans;
  for (size_t i = 0; i < specs.size(); ++i) {
    params[i].resize(specs[i].size());
    grads[i].resize(specs[i].size());
    param_spans.push_back(params[i]);
  }
  if (!InitDenseParams(specs, 7, param_spans).ok()) {
    state.SkipWithError("init failed");
    return;
  }
  std::vector<std::span<const float>> p(params.begin(), params.end());

  std::mt19937 rng(1);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  const size_t bf = static_cast<size_t>(kBatch) * kFields;
  std::vector<float> emb(bf * kEmbDim), linear(bf), mask(bf, 1.0f), labels(kBatch);
  for (float& v : emb) v = u(rng);
  for (float& v : linear) v = u(rng);
  for (int r = 0; r < kBatch; ++r) labels[r] = static_cast<float>(r % 4 == 0);
  std::vector<float> demb(emb.size()), dlin(linear.size());
  ModelBatch batch{kBatch, emb, linear, mask, {}, labels};
  ModelGradients g{demb, dlin, {}};
  for (auto& v : grads) g.dense.push_back(v);

  for (auto _ : state) {
    auto loss = model.ForwardBackward(batch, p, g);
    if (!loss.ok()) {
      state.SkipWithError(loss.status().ToString().c_str());
      return;
    }
    benchmark::DoNotOptimize(*loss);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
  state.counters["rows_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations()) * kBatch, benchmark::Counter::kIsRate);
}

void BM_DeepFmForwardBackward(benchmark::State& state) { RunModel(state, ModelKind::kDeepFm); }
void BM_WideDeepForwardBackward(benchmark::State& state) { RunModel(state, ModelKind::kWideDeep); }
void BM_FmForwardBackward(benchmark::State& state) { RunModel(state, ModelKind::kFm); }
void BM_LrForwardBackward(benchmark::State& state) { RunModel(state, ModelKind::kLr); }

BENCHMARK(BM_DeepFmForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_WideDeepForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_FmForwardBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();
BENCHMARK(BM_LrForwardBackward)->Unit(benchmark::kMicrosecond)->UseRealTime();

}  // namespace
}  // namespace eddy::models

BENCHMARK_MAIN();
