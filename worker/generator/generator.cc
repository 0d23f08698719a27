#include "worker/generator/generator.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>

#include "common/partition.h"
#include "worker/generator/generator_internal.h"

namespace eddy::worker {
namespace internal {
namespace {

constexpr int kInts = ClickStreamGenerator::kNumIntegerFields;
constexpr int kCats = ClickStreamGenerator::kNumCategoricalFields;
constexpr int kLatentDim = 4;
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

}  // namespace

// The item at one popularity rank: effect and id share a cache line.
struct Slot {
  float effect;
  uint32_t item;
};

struct CatField {
  uint32_t vocab = 0;
  uint32_t missing_threshold = 0;  // missing if 32 random bits < this
  float effect_sd = 0;
  float missing_effect = 0;
  uint32_t next_item = 0;  // id of the next new item
  bool has_latent = false;
  ZipfSampler zipf;
  double zipf_exponent = 0;
  std::vector<Slot> slots;    // rank -> item at that rank
  std::vector<float> latent;  // rank * kLatentDim -> latent vector (if has_latent)
};

struct RowDraw {
  std::array<int32_t, kInts> ints;
  std::array<uint32_t, kCats> slot;  // UINT32_MAX when missing
};

// The default stream: per-rank effects and latent vectors in tables.
struct GeneratorState final : StreamImpl {
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
  int Append(std::string* out, float* true_p, bool newline) override;
  uint64_t Rows() const override { return rows; }
  uint64_t Drifts() const override { return drifts; }
  double Bias() const override { return bias; }
  std::vector<CategoricalFieldInfo> Fields() const override;
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
    c.zipf_exponent = s;
    c.zipf.Init(c.vocab, s);
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
  for (int f = 0; f < kInts; ++f) ints[f].Init(setup, signal, kIntMissing[f]);
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
    const uint32_t slot = c.zipf.Sample(r);
    d->slot[f] = slot;
    __builtin_prefetch(&c.slots[slot]);
    if (c.has_latent) __builtin_prefetch(&c.latent[static_cast<size_t>(slot) * kLatentDim]);
  }
  double z = 0;
  for (int f = 0; f < kInts; ++f) z += ints[f].Draw(r, &d->ints[f]);
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
  bias = CalibrateBias(z, options.ctr);
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
      const uint32_t b = ShiftedRank(r, a, c.vocab);
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

int GeneratorState::Append(std::string* out, float* true_p, bool newline) {
  if (options.drift_every != 0 && rows != 0 && rows % options.drift_every == 0) Drift();
  RowDraw d;
  const int label = DrawLabel(rng, bias + Draw(rng, &d), true_p);
  ++rows;
  std::array<uint64_t, kCats> items;
  for (int f = 0; f < kCats; ++f)
    items[f] = d.slot[f] == UINT32_MAX ? kNoItem : cats[f].slots[d.slot[f]].item;
  AppendCriteoRow(label, d.ints.data(), items.data(), MixKey(options.seed ^ 0xca7ULL), newline,
                  out);
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
  if (!preset.empty() && !internal::IsPresetName(preset))
    return InvalidArgumentError("unknown preset '" + preset + "'");
  return OkStatus();
}

std::vector<CategoricalFieldInfo> internal::GeneratorState::Fields() const {
  std::vector<CategoricalFieldInfo> out;
  for (int f = 0; f < internal::kCats; ++f) {
    out.push_back({cats[f].vocab, cats[f].zipf_exponent, internal::kCatMissing[f]});
  }
  return out;
}

ClickStreamGenerator::ClickStreamGenerator(const GeneratorOptions& options) {
  const Status s = options.Validate();
  CHECK(s.ok()) << s;
  if (!options.preset.empty()) {
    state_ = internal::MakePresetStream(options);
  } else {
    auto state = std::make_unique<internal::GeneratorState>();
    state->options = options;
    state->Init();
    state_ = std::move(state);
  }
}

ClickStreamGenerator::~ClickStreamGenerator() = default;

void ClickStreamGenerator::NextRow(std::string* line, float* true_p) {
  line->clear();
  state_->Append(line, true_p, /*newline=*/false);
}

int ClickStreamGenerator::AppendRow(std::string* out, float* true_p) {
  return state_->Append(out, true_p, /*newline=*/true);
}

uint64_t ClickStreamGenerator::rows_generated() const { return state_->Rows(); }
uint64_t ClickStreamGenerator::drifts() const { return state_->Drifts(); }
double ClickStreamGenerator::bias() const { return state_->Bias(); }

std::vector<uint32_t> ClickStreamGenerator::VocabSizes() const {
  std::vector<uint32_t> v;
  for (const CategoricalFieldInfo& c : state_->Fields()) v.push_back(c.vocab);
  return v;
}

std::vector<CategoricalFieldInfo> ClickStreamGenerator::CategoricalFields() const {
  return state_->Fields();
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
