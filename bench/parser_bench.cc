// Parser throughput on generated Criteo rows (one core): BM_ParseCriteo.
//   build/bin/parser_bench
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "worker/data/parser.h"
#include "worker/data/row.h"
#include "worker/generator/generator.h"

namespace eddy::worker {
namespace {

std::vector<std::string> GeneratedRows(size_t n) {
  GeneratorOptions options;
  ClickStreamGenerator gen(options);
  std::vector<std::string> rows(n);
  float p = 0;
  for (auto& r : rows) gen.NextRow(&r, &p);
  return rows;
}

void BM_ParseCriteo(benchmark::State& state) {
  const std::vector<std::string> rows = GeneratedRows(100000);
  auto parser = MakeCriteoParser();
  Example example;
  size_t i = 0, bytes = 0;
  for (auto _ : state) {
    const std::string& row = rows[i++ % rows.size()];
    benchmark::DoNotOptimize(parser->Parse(row, &example));
    bytes += row.size() + 1;
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations()));
  state.SetBytesProcessed(static_cast<int64_t>(bytes));
}
BENCHMARK(BM_ParseCriteo);

}  // namespace
}  // namespace eddy::worker

BENCHMARK_MAIN();
