#include "worker/generator/generator.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "common/partition.h"

namespace eddy::worker {
namespace internal {
namespace {

constexpr int kInts = ClickStreamGenerator::kNumIntegerFields;
constexpr int kCats = ClickStreamGenerator::kNumCategoricalFields;
constexpr int kLatentDim = 4;
constexpr int kIntTableBits = 12;
constexpr uint32_t kIntTableSize = 1u << kIntTableBits;
constexpr int32_t kMissing = -1;
constexpr int kCalibrationRows = 20000;

// Cardinalities shaped like Criteo's C1..C26 (the widest capped at 1M).
constexpr std::array<uint32_t, kCats> kVocab = {
    1460, 583,   1000000, 500000, 305,  24,   12517, 633,    10, 93145, 5683,   800000, 3194,
    27,   14992, 600000,  10,     5652, 2173, 12,    700000, 18, 15,    286181, 105,    142572};
constexpr std::array<float, kCats> kCatMissing = {
    0, 0, 0.03f, 0.03f, 0, 0.12f, 0,     0, 0,     0.03f, 0,     0.03f, 0,
    0, 0, 0.03f, 0,     0, 0.44f, 0.44f, 0, 0.03f, 0,     0.44f, 0.03f, 0.03f};
constexpr std::array<float, kInts> kIntMissing = {0.45f, 0,     0.2f,  0.2f,  0.03f, 0.22f, 0.04f,
                                                  0,     0.04f, 0.45f, 0.04f, 0.76f, 0.2f};
// Field pairs with latent interactions (among fields of moderate vocabulary).
constexpr std::array<std::pair<int, int>, 10> kPairs = {
    {{0, 4}, {1, 7}, {5, 13}, {6, 10}, {8, 16}, {12, 14}, {17, 18}, {19, 21}, {22, 24}, {4, 25}}};

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
  // Irwin-Hall approximation (sum of 4 uniforms): mean 0, variance 1, |x| < 3.5.
  double FastNormal() {
    const uint64_t x = Next();
    const double sum =
        static_cast<double>((x & 0xffff) + ((x >> 16) & 0xffff) + ((x >> 32) & 0xffff) + (x >> 48));
    return (sum / 65536.0 - 2.0) * 1.7320508075688772;
  }
  double Normal() {
    const double u = Uniform() + 0x1.0p-54, v = Uniform();
    return std::sqrt(-2 * std::log(u)) * std::cos(6.283185307179586 * v);
  }
};

struct AliasEntry {
  uint32_t threshold;  // keep the slot if the low 32 random bits are below this
  uint32_t alias;
};

// Vose's alias method over weights (normalised internally).
std::vector<AliasEntry> BuildAlias(const std::vector<double>& w) {
  const size_t n = w.size();
  double total = 0;
  for (double x : w) total += x;
  std::vector<double> scaled(n);
  std::vector<uint32_t> small, large;
  for (size_t i = 0; i < n; ++i) {
    scaled[i] = w[i] * static_cast<double>(n) / total;
    (scaled[i] < 1 ? small : large).push_back(static_cast<uint32_t>(i));
  }
  std::vector<AliasEntry> table(n);
  while (!small.empty() && !large.empty()) {
    const uint32_t s = small.back(), l = large.back();
    small.pop_back();
    table[s] = {static_cast<uint32_t>(std::min(scaled[s] * 4294967296.0, 4294967295.0)), l};
    scaled[l] -= 1 - scaled[s];
    if (scaled[l] < 1) {
      large.pop_back();
      small.push_back(l);
    }
  }
  for (uint32_t i : large) table[i] = {0xffffffffu, i};
  for (uint32_t i : small) table[i] = {0xffffffffu, i};  // rounding leftovers
  return table;
}

}  // namespace

// The item at one popularity rank: effect and id share a cache line.
struct Slot {
  float effect;
  uint32_t item;
};

// Ranks below kHeadRanks are drawn from an alias table small enough to stay in
// cache; the rarer tail (one extra alias outcome) from the continuous
// inverse CDF of x^-s, so a row costs no cache miss for the common values.
constexpr uint32_t kHeadRanks = 16384;

struct CatField {
  uint32_t vocab = 0;
  uint32_t head = 0;               // ranks drawn from the alias table
  uint32_t missing_threshold = 0;  // missing if 32 random bits < this
  float effect_sd = 0;
  float missing_effect = 0;
  uint32_t next_item = 0;  // id of the next new item
  bool has_latent = false;
  double tail_lo = 0, tail_hi = 0, tail_power = 0;  // rank + 1 = (lo + u (hi - lo))^power
  std::vector<AliasEntry> alias;                    // over ranks [0, head), plus `head` = the tail
  std::vector<Slot> slots;                          // rank -> item at that rank
  std::vector<float> latent;  // rank * kLatentDim -> latent vector (if has_latent)

  uint32_t SampleRank(Rng& r) const {
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

struct IntField {
  double alpha = 1, scale = 1, weight = 0, center = 0;
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
};

struct RowDraw {
  std::array<int32_t, kInts> ints;
  std::array<uint32_t, kCats> slot;  // UINT32_MAX when missing
};

struct GeneratorState {
  GeneratorOptions options;
  Rng rng{0};
  uint64_t rows = 0;
  uint64_t drifts = 0;
  double bias = 0;
  double interaction_scale = 0;
  std::array<CatField, kCats> cats;
  std::array<IntField, kInts> ints;

  void Init();
  double Draw(Rng& r, RowDraw* d) const;
  void Drift();
  void Calibrate();
  int Append(std::string* out, float* true_p, bool newline);
};

void GeneratorState::Init() {
  Rng setup{MixKey(options.seed ^ 0x5eed)};
  rng.s = MixKey(options.seed);
  const double signal = options.signal;
  for (int f = 0; f < kCats; ++f) {
    CatField& c = cats[f];
    c.vocab = std::min(kVocab[f], options.max_vocab);
    c.missing_threshold = static_cast<uint32_t>(kCatMissing[f] * 4294967296.0);
    c.effect_sd = static_cast<float>(signal * 0.32 * (0.5 + setup.Uniform()));
    c.missing_effect = static_cast<float>(c.effect_sd * setup.Normal());
    const double s = 1.01 + 0.29 * setup.Uniform();  // Zipf exponent
    c.head = std::min(c.vocab, kHeadRanks);
    std::vector<double> w(c.head);
    for (uint32_t r = 0; r < c.head; ++r) w[r] = std::pow(r + 1.0, -s);
    if (c.head < c.vocab) {
      // sum_{k=head+1}^{vocab} k^-s, by the midpoint integral (relative error < 1e-9 here).
      w.push_back((std::pow(c.vocab + 0.5, 1 - s) - std::pow(c.head + 0.5, 1 - s)) / (1 - s));
      c.tail_lo = std::pow(c.head + 1.0, 1 - s);
      c.tail_hi = std::pow(c.vocab + 1.0, 1 - s);
      c.tail_power = 1 / (1 - s);
    }
    c.alias = BuildAlias(w);
    c.slots.resize(c.vocab);
    for (uint32_t r = 0; r < c.vocab; ++r)
      c.slots[r] = {static_cast<float>(c.effect_sd * setup.FastNormal()), r};
    c.next_item = c.vocab;
  }
  for (const auto& [a, b] : kPairs) cats[a].has_latent = cats[b].has_latent = true;
  for (CatField& c : cats) {
    if (!c.has_latent) continue;
    c.latent.resize(static_cast<size_t>(c.vocab) * kLatentDim);
    for (float& x : c.latent) x = static_cast<float>(setup.FastNormal() / std::sqrt(kLatentDim));
  }
  // <v_a, v_b> has standard deviation 1/2, so each pair adds a term of sd
  // interaction_scale / 2 (roughly an eighth of the logit variance in total).
  interaction_scale = signal * 0.5;
  for (int f = 0; f < kInts; ++f) {
    IntField& it = ints[f];
    it.alpha = 1.1 + 1.9 * setup.Uniform();
    it.scale = std::exp(4 * setup.Uniform());
    it.weight = signal * 0.25 * setup.Normal();
    it.center = std::log1p(it.Quantile(0.5));
    it.table.resize(kIntTableSize);
    const double miss = kIntMissing[f];
    for (uint32_t i = 0; i < kIntTableSize; ++i) {
      const double u = (i + 0.5) / kIntTableSize;
      if (u < miss) {
        it.table[i] = {kMissing, 0.0f};
      } else {
        const int64_t v = it.Quantile((u - miss) / (1 - miss));
        it.table[i] = {static_cast<int32_t>(v), it.Effect(v)};
      }
    }
  }
  Calibrate();
}

double GeneratorState::Draw(Rng& r, RowDraw* d) const {
  // Ranks first, prefetching their slots, so the (rare-value) cache misses of
  // all fields overlap with each other and with the integer fields.
  for (int f = 0; f < kCats; ++f) {
    const CatField& c = cats[f];
    if (c.missing_threshold != 0 && static_cast<uint32_t>(r.Next()) < c.missing_threshold) {
      d->slot[f] = UINT32_MAX;
      continue;
    }
    const uint32_t slot = c.SampleRank(r);
    d->slot[f] = slot;
    __builtin_prefetch(&c.slots[slot]);
    if (c.has_latent) __builtin_prefetch(&c.latent[static_cast<size_t>(slot) * kLatentDim]);
  }
  double z = 0;
  for (int f = 0; f < kInts; ++f) {
    const IntField& it = ints[f];
    const uint64_t x = r.Next();
    const uint32_t i = static_cast<uint32_t>(x >> (64 - kIntTableBits));
    if (i == kIntTableSize - 1 && it.table[i].value != kMissing) {
      // The top 1/4096 of the distribution: draw the exact heavy tail.
      const double u = 1 - (0.5 + static_cast<double>(x & 0xffffffffu)) * 0x1.0p-32 / kIntTableSize;
      const int64_t v = std::min<int64_t>(it.Quantile(u), INT32_MAX);
      d->ints[f] = static_cast<int32_t>(v);
      z += it.Effect(v);
    } else {
      d->ints[f] = it.table[i].value;
      z += it.table[i].effect;
    }
  }
  for (int f = 0; f < kCats; ++f) {
    const uint32_t slot = d->slot[f];
    z += slot == UINT32_MAX ? cats[f].missing_effect : cats[f].slots[slot].effect;
  }
  double inter = 0;
  for (const auto& [a, b] : kPairs) {
    const uint32_t sa = d->slot[a], sb = d->slot[b];
    if (sa == UINT32_MAX || sb == UINT32_MAX) continue;
    const float* va = &cats[a].latent[static_cast<size_t>(sa) * kLatentDim];
    const float* vb = &cats[b].latent[static_cast<size_t>(sb) * kLatentDim];
    float dot = 0;
    for (int k = 0; k < kLatentDim; ++k) dot += va[k] * vb[k];
    inter += dot;
  }
  return z + interaction_scale * inter;
}

void GeneratorState::Calibrate() {
  // Logits of a sample of rows from a side generator (the stream is untouched),
  // then bisection for the bias giving the target mean probability.
  Rng side{MixKey(options.seed ^ (0xca1ULL << 32) ^ drifts)};
  std::vector<double> z(kCalibrationRows);
  RowDraw d;
  for (double& x : z) x = Draw(side, &d);
  double lo = -30, hi = 30;
  for (int iter = 0; iter < 60; ++iter) {
    const double mid = (lo + hi) / 2;
    double mean = 0;
    for (double x : z) mean += 1 / (1 + std::exp(-(mid + x)));
    mean /= kCalibrationRows;
    (mean < options.ctr ? lo : hi) = mid;
  }
  bias = (lo + hi) / 2;
}

void GeneratorState::Drift() {
  ++drifts;
  Rng r{MixKey(options.seed ^ (0xd41f7ULL << 32) ^ drifts)};
  const double frac = options.drift_fraction;
  for (CatField& c : cats) {
    const uint64_t changes = static_cast<uint64_t>(frac * c.vocab + 0.5);
    auto fresh_latent = [&](uint32_t slot) {
      if (!c.has_latent) return;
      for (int k = 0; k < kLatentDim; ++k) {
        c.latent[static_cast<size_t>(slot) * kLatentDim + k] =
            static_cast<float>(r.FastNormal() / std::sqrt(kLatentDim));
      }
    };
    // New items replace old ones (which fade out of the stream).
    for (uint64_t i = 0; i < changes; ++i) {
      const uint32_t slot = ScaleToRange(r.Next(), c.vocab);
      c.slots[slot] = {static_cast<float>(c.effect_sd * r.FastNormal()), c.next_item++};
      fresh_latent(slot);
    }
    // Popularity shifts: items move to a rank up to a few times higher or lower.
    for (uint64_t i = 0; i < changes; ++i) {
      const uint32_t a = ScaleToRange(r.Next(), c.vocab);
      const double target = (a + 1.0) * std::exp(1.5 * r.Normal()) - 1;
      const uint32_t b = static_cast<uint32_t>(std::clamp(target, 0.0, c.vocab - 1.0));
      std::swap(c.slots[a], c.slots[b]);
      if (c.has_latent) {
        std::swap_ranges(c.latent.begin() + static_cast<ptrdiff_t>(a) * kLatentDim,
                         c.latent.begin() + static_cast<ptrdiff_t>(a + 1) * kLatentDim,
                         c.latent.begin() + static_cast<ptrdiff_t>(b) * kLatentDim);
      }
    }
    // Existing items change their effect.
    for (uint64_t i = 0; i < changes / 2; ++i) {
      const uint32_t slot = ScaleToRange(r.Next(), c.vocab);
      c.slots[slot].effect = static_cast<float>(c.effect_sd * r.FastNormal());
    }
  }
  Calibrate();
}

namespace {

char* AppendUint(char* p, uint32_t v) {
  char tmp[10];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0) *p++ = tmp[--n];
  return p;
}

constexpr char kHex[] = "0123456789abcdef";

char* AppendHex8(char* p, uint32_t v) {
  for (int i = 7; i >= 0; --i) {
    p[i] = kHex[v & 15];
    v >>= 4;
  }
  return p + 8;
}

}  // namespace

int GeneratorState::Append(std::string* out, float* true_p, bool newline) {
  if (options.drift_every != 0 && rows != 0 && rows % options.drift_every == 0) Drift();
  RowDraw d;
  const double z = bias + Draw(rng, &d);
  const double p = 1 / (1 + std::exp(-z));
  const int label = rng.Uniform() < p ? 1 : 0;
  ++rows;
  // 2 + 13 * 11 + 26 * 9 bytes at most.
  constexpr size_t kMaxRow = 2 + kInts * 11 + kCats * 9 + 1;
  const size_t old = out->size();
  out->resize(old + kMaxRow);
  char* begin = out->data() + old;
  char* q = begin;
  *q++ = static_cast<char>('0' + label);
  for (int f = 0; f < kInts; ++f) {
    *q++ = '\t';
    if (d.ints[f] != kMissing) q = AppendUint(q, static_cast<uint32_t>(d.ints[f]));
  }
  const uint64_t salt = MixKey(options.seed ^ 0xca7ULL);
  for (int f = 0; f < kCats; ++f) {
    *q++ = '\t';
    if (d.slot[f] == UINT32_MAX) continue;
    const uint64_t item = cats[f].slots[d.slot[f]].item;
    q = AppendHex8(q,
                   static_cast<uint32_t>(MixKey(salt ^ (static_cast<uint64_t>(f) << 40) ^ item)));
  }
  if (newline) *q++ = '\n';
  out->resize(old + static_cast<size_t>(q - begin));
  *true_p = static_cast<float>(p);
  return label;
}

}  // namespace internal

Status GeneratorOptions::Validate() const {
  if (!(ctr >= 0.001 && ctr <= 0.9))
    return InvalidArgumentError("ctr must be in [0.001, 0.9], got " + std::to_string(ctr));
  if (!(drift_fraction >= 0 && drift_fraction <= 1)) {
    return InvalidArgumentError("drift_fraction must be in [0, 1], got " +
                                std::to_string(drift_fraction));
  }
  if (!(signal > 0 && signal <= 10))
    return InvalidArgumentError("signal must be in (0, 10], got " + std::to_string(signal));
  if (max_vocab < 10)
    return InvalidArgumentError("max_vocab must be >= 10, got " + std::to_string(max_vocab));
  return OkStatus();
}

ClickStreamGenerator::ClickStreamGenerator(const GeneratorOptions& options)
    : state_(std::make_unique<internal::GeneratorState>()) {
  const Status s = options.Validate();
  CHECK(s.ok()) << s;
  state_->options = options;
  state_->Init();
}

ClickStreamGenerator::~ClickStreamGenerator() = default;

void ClickStreamGenerator::NextRow(std::string* line, float* true_p) {
  line->clear();
  state_->Append(line, true_p, /*newline=*/false);
}

int ClickStreamGenerator::AppendRow(std::string* out, float* true_p) {
  return state_->Append(out, true_p, /*newline=*/true);
}

uint64_t ClickStreamGenerator::rows_generated() const { return state_->rows; }
uint64_t ClickStreamGenerator::drifts() const { return state_->drifts; }
double ClickStreamGenerator::bias() const { return state_->bias; }

std::vector<uint32_t> ClickStreamGenerator::VocabSizes() const {
  std::vector<uint32_t> v;
  for (const internal::CatField& c : state_->cats) v.push_back(c.vocab);
  return v;
}

void AppendProbabilityLine(float p, std::string* out) {
  const double clamped = std::clamp(static_cast<double>(p), 0.0, 1.0);
  const uint32_t x = static_cast<uint32_t>(std::lround(clamped * 1e7));
  char buf[16];
  buf[0] = static_cast<char>('0' + x / 10000000);
  buf[1] = '.';
  uint32_t frac = x % 10000000;
  for (int i = 8; i >= 2; --i) {
    buf[i] = static_cast<char>('0' + frac % 10);
    frac /= 10;
  }
  buf[9] = '\n';
  out->append(buf, 10);
}

}  // namespace eddy::worker
