// Seeded, reproducible synthetic click stream in the Criteo TSV format, with
// the true click probability of every row, heavy-tailed vocabularies, pairwise
// field interactions and periodic concept drift; plus named Criteo-like presets
// (production-shaped cardinalities, tails, CTR and missing values).
// Thread-safety: a ClickStreamGenerator is used by one thread at a time.
#ifndef EDDY_WORKER_GENERATOR_GENERATOR_H_
#define EDDY_WORKER_GENERATOR_GENERATOR_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace eddy::worker {

namespace internal {
class StreamImpl;
}  // namespace internal

struct GeneratorOptions {
  uint64_t seed = 1;
  // Target mean click probability; the bias is recalibrated at every drift.
  // Must be in [0.001, 0.9].
  double ctr = 0.1;
  // Rows between concept drifts; 0 = no drift.
  uint64_t drift_every = 500'000;
  // At each drift, per field, this fraction of item slots gets a new item
  // (old items fade), another as many swap popularity ranks, and half as many
  // items get a new effect. In [0, 1].
  double drift_fraction = 0.1;
  // Scales every effect: higher means a more predictable stream (best AUC up).
  // In (0, 10].
  double signal = 1.0;
  // Caps every categorical vocabulary (the widest field has 1,000,000 values);
  // smaller values make construction cheaper for tests. >= 10.
  uint32_t max_vocab = 1'000'000;
  // "" = the default stream (its bytes never change for the same options);
  // else one of PresetNames(): a Criteo-like stream (see ApplyPreset).
  std::string preset;

  // InvalidArgument naming the first bad field.
  Status Validate() const;
};

// The Criteo-like presets: "criteo_a" (CTR 3.5 %, Zipf exponents ~1.1, the
// Kaggle set's cardinalities capped at 10^6), "criteo_b" (CTR 25 %, a third of
// the cardinalities, exponents 1.05-1.25, more missing values), "criteo_c"
// (CTR 3 %, exponents ~1.2, drift 5x as often, twice as strong).
std::vector<std::string> PresetNames();

// Sets options->preset = name and the preset's ctr, drift_every,
// drift_fraction and signal (callers may override these afterwards; seed and
// max_vocab are left alone). InvalidArgument for an unknown name.
Status ApplyPreset(std::string_view name, GeneratorOptions* options);

// What a categorical field of a stream is built from.
struct CategoricalFieldInfo {
  uint32_t vocab = 0;        // popularity ranks (ids alive at any time)
  double zipf_exponent = 0;  // P(rank r) ~ (r + 1)^-exponent
  double missing_rate = 0;   // probability that the field is empty
};

// Generates rows in time order. Columns: label, I1..I13 (non-negative integers),
// C1..C26 (8 lowercase hex digits); an empty field is a missing value.
// The click probability is sigmoid(bias + per-value effects of every present
// field + sum over some field pairs of <v_a, v_b> latent interactions); the
// label is a Bernoulli draw of it. Same options => byte-identical stream.
class ClickStreamGenerator {
 public:
  static constexpr int kNumIntegerFields = 13;
  static constexpr int kNumCategoricalFields = 26;

  // Requires options.Validate().ok() (CHECKed: callers validate flags first).
  explicit ClickStreamGenerator(const GeneratorOptions& options);
  ~ClickStreamGenerator();
  ClickStreamGenerator(const ClickStreamGenerator&) = delete;
  ClickStreamGenerator& operator=(const ClickStreamGenerator&) = delete;

  // Replaces *line with the next row (no trailing newline) and sets *true_p
  // to its click probability.
  void NextRow(std::string* line, float* true_p);
  // Appends the next row, terminated by '\n', to *out; returns its label and
  // sets *true_p. The fast path for writing files.
  int AppendRow(std::string* out, float* true_p);

  uint64_t rows_generated() const;
  // Number of drifts applied so far.
  uint64_t drifts() const;
  // Current bias (logit offset calibrated to options.ctr).
  double bias() const;
  // Vocabulary size (item slots) of each categorical field.
  std::vector<uint32_t> VocabSizes() const;
  // Vocabulary, tail and missing rate of each categorical field.
  std::vector<CategoricalFieldInfo> CategoricalFields() const;

 private:
  std::unique_ptr<internal::StreamImpl> state_;
};

// Appends `p` as "0.ddddddd" (7 decimals) and '\n' to *out: the truth-file format.
void AppendProbabilityLine(float p, std::string* out);

}  // namespace eddy::worker

#endif  // EDDY_WORKER_GENERATOR_GENERATOR_H_
