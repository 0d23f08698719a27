// Building blocks shared by the generator's two stream implementations (the
// default table-backed stream and the lazy Criteo-like presets): a small RNG,
// a Zipf rank sampler, heavy-tailed integer fields and row formatting.
// Thread-safety: plain values; a const sampler may be shared by readers.
#ifndef EDDY_WORKER_GENERATOR_GENERATOR_INTERNAL_H_
#define EDDY_WORKER_GENERATOR_GENERATOR_INTERNAL_H_

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/partition.h"
#include "worker/generator/generator.h"

namespace eddy::worker::internal {

constexpr int32_t kMissing = -1;
constexpr int kIntTableBits = 12;
constexpr uint32_t kIntTableSize = 1u << kIntTableBits;
// Ranks below this are drawn from an alias table small enough to stay in cache.
constexpr uint32_t kHeadRanks = 16384;

// SplitMix64: tiny state, fast, good enough for simulation.
struct Rng {
  uint64_t s;
  uint64_t Next() {
    s += 0x9e3779b97f4a7c15ULL;
    uint64_t z = s;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double Uniform() { return static_cast<double>(Next() >> 11) * 0x1.0p-53; }  // [0, 1)
  double FastNormal() { return NormalFromBits(Next()); }
  double Normal() {
    const double u = Uniform() + 0x1.0p-54, v = Uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
  // Irwin-Hall approximation (sum of 4 uniforms of 16 bits each): mean 0,
  // variance 1, |x| < 3.5. A pure function of x, so hashes can feed it too.
  static double NormalFromBits(uint64_t x) {
    const double sum =
        static_cast<double>((x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48));
    return (sum / 65536.0 - 2.0) * 1.7320508075688772;
  }
};

struct AliasEntry {
  uint32_t threshold;  // keep the slot if the low 32 random bits are below this
  uint32_t alias;
};

// Vose's alias method over weights (normalised internally).
std::vector<AliasEntry> BuildAlias(const std::vector<double>& w);

// Draws popularity ranks in [0, vocab) with P(rank r) proportional to
// (r + 1)^-s. Ranks below kHeadRanks come from an alias table; the rarer tail
// (one extra alias outcome) from the continuous inverse CDF of x^-s.
struct ZipfSampler {
  uint32_t vocab = 0;
  uint32_t head = 0;                                // ranks drawn from the alias table
  double tail_lo = 0, tail_hi = 0, tail_power = 0;  // rank + 1 = (lo + u (hi - lo))^power
  std::vector<AliasEntry> alias;                    // over ranks [0, head), plus `head` = the tail

  // Requires vocab >= 1 and s > 1.
  void Init(uint32_t vocab_size, double s);
  uint32_t Sample(Rng& r) const {
    const uint64_t x = r.Next();
    const uint32_t i = ScaleToRange(x, static_cast<uint32_t>(alias.size()));
    const AliasEntry& e = alias[i];
    const uint32_t rank = static_cast<uint32_t>(x) < e.threshold ? i : e.alias;
    if (rank < head) return rank;
    const double t = std::pow(tail_lo + r.Uniform() * (tail_hi - tail_lo), tail_power) - 1;
    return static_cast<uint32_t>(std::clamp(t, static_cast<double>(head), vocab - 1.0));
  }
};

struct IntEntry {
  int32_t value;  // kMissing when missing
  float effect;
};

// A non-negative integer feature: Lomax (Pareto II) distributed, with an effect
// on the logit linear in its log1p, clamped.
struct IntField {
  double alpha = 1, scale = 1, weight = 0, center = 0;
  double missing_rate = 0;      // set by BuildTable
  std::vector<IntEntry> table;  // inverse CDF by the top kIntTableBits random bits
  float Effect(int64_t v) const {
    return static_cast<float>(weight *
                              std::clamp(std::log1p(static_cast<double>(v)) - center, -4.0, 4.0));
  }
  // Lomax quantile at u in [0, 1).
  int64_t Quantile(double u) const {
    const double v = scale * (std::pow(1 - u, -1 / alpha) - 1);
    return static_cast<int64_t>(std::min(v, 2e9));
  }
  // Draws alpha, scale and weight from `setup` (effects scaled by `signal`),
  // then builds the table.
  void Init(Rng& setup, double signal, double missing);
  // Fills `table` given alpha, scale, weight, center and the missing rate.
  void BuildTable(double missing);
  // Draws a value (kMissing or >= 0) into *value; returns its logit effect.
  double Draw(Rng& r, int32_t* value) const;
};

constexpr uint64_t kNoItem = UINT64_MAX;

// Appends one Criteo TSV row to *out: the label, the 13 integers (kMissing =
// empty), the 26 items written as 8 hex digits of MixKey(salt ^ field << 40 ^
// item) (kNoItem = empty), then '\n' if `newline`.
void AppendCriteoRow(int label, const int32_t* ints, const uint64_t* items, uint64_t salt,
                     bool newline, std::string* out);

// Popularity shift at drift: a rank up to a few times higher or lower than
// `rank` (log-normal factor on rank + 1), clamped to [0, vocab).
inline uint32_t ShiftedRank(Rng& r, uint32_t rank, uint32_t vocab) {
  const double target = (rank + 1.0) * std::exp(1.5 * r.Normal()) - 1;
  return static_cast<uint32_t>(std::clamp(target, 0.0, vocab - 1.0));
}

// The label of a row of logit z, drawn from r; sets *true_p = sigmoid(z).
int DrawLabel(Rng& r, double z, float* true_p);

// The bias b for which the mean of sigmoid(b + z) over the sample z is `ctr`.
double CalibrateBias(const std::vector<double>& z, double ctr);

// One stream implementation behind ClickStreamGenerator.
class StreamImpl {
 public:
  virtual ~StreamImpl() = default;
  // Appends the next row (and '\n' if newline); returns its label, sets *true_p.
  virtual int Append(std::string* out, float* true_p, bool newline) = 0;
  virtual uint64_t Rows() const = 0;
  virtual uint64_t Drifts() const = 0;
  virtual double Bias() const = 0;
  virtual std::vector<CategoricalFieldInfo> Fields() const = 0;
};

// The Criteo-like preset stream; requires options.Validate().ok() and a
// non-empty options.preset.
std::unique_ptr<StreamImpl> MakePresetStream(const GeneratorOptions& options);
// True if `name` is a preset MakePresetStream knows.
bool IsPresetName(std::string_view name);

}  // namespace eddy::worker::internal

#endif  // EDDY_WORKER_GENERATOR_GENERATOR_INTERNAL_H_
