// GeneratorSource: the synthetic click stream as a LineSource, so a job can train
// on a generated stream without writing it to disk first (eddy_train
// --data=gen:rows=N,drift=D,seed=S, or --data=gen:preset=criteo_a,rows=N). Every
// worker generates the same rows, so ShardedSource splits them exactly as it
// splits a file.
// Thread-safety: like every LineSource, used by one thread.
#ifndef EDDY_WORKER_GENERATOR_GENERATOR_SOURCE_H_
#define EDDY_WORKER_GENERATOR_GENERATOR_SOURCE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "worker/data/source.h"
#include "worker/generator/generator.h"

namespace eddy::worker {

struct GeneratedStreamSpec {
  uint64_t rows = 1'000'000;
  GeneratorOptions generator;
};

// Parses "gen" or "gen:rows=N,drift=D,seed=S,ctr=C,signal=X,vocab=V,preset=NAME"
// (any subset, any order; drift = GeneratorOptions::drift_every, vocab =
// max_vocab; preset = ApplyPreset(NAME) first, the other keys override it).
// Errors: InvalidArgument naming the bad key or value.
StatusOr<GeneratedStreamSpec> ParseGeneratedStreamSpec(std::string_view spec);

class GeneratorSource final : public LineSource {
 public:
  explicit GeneratorSource(const GeneratedStreamSpec& spec);
  StatusOr<bool> Next(Line* line) override;

 private:
  const uint64_t rows_;
  ClickStreamGenerator generator_;
  std::string text_;
  uint64_t produced_ = 0;
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_GENERATOR_GENERATOR_SOURCE_H_
