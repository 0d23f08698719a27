// The Criteo-like preset streams. Unlike the default stream, per-id effects
// and latent vectors are not stored: they are derived from a hash of (seed,
// field, id), so a field of 10^6 ranks costs 4 bytes a rank (its rank -> id
// table) and construction is a few tens of milliseconds.
#include <algorithm>
#include <array>
#include <cmath>

#include "worker/generator/generator_internal.h"

namespace eddy::worker {
namespace internal {
namespace {

constexpr int kInts = ClickStreamGenerator::kNumIntegerFields;
constexpr int kCats = ClickStreamGenerator::kNumCategoricalFields;
constexpr int kLatentDim = 4;
constexpr int kCalibrationRows = 20000;
constexpr uint32_t kMaxPresetVocab = 1'000'000;

// Distinct values of C1..C26 in the Criteo Kaggle (display advertising
// challenge) training set, as commonly reported; capped at kMaxPresetVocab.
constexpr std::array<uint32_t, kCats> kCriteoVocab = {
    1460, 583,   10131227, 2202608, 305,  24,   12517, 633,     3,  93145, 5683,   8351593, 3194,
    27,   14992, 5461306,  10,      5652, 2173, 4,     7046547, 18, 15,    286181, 105,     142572};
// Approximate missing rates of C1..C26 and I1..I13 in that set.
constexpr std::array<double, kCats> kCriteoCatMissing = {
    0, 0, 0.034, 0.034, 0, 0.121, 0,    0, 0,     0.034, 0, 0.034, 0,
    0, 0, 0.034, 0,     0, 0.44,  0.44, 0, 0.034, 0.762, 0, 0.034, 0.44};
constexpr std::array<double, kInts> kCriteoIntMissing = {
    0.454, 0, 0.215, 0.217, 0.026, 0.223, 0.043, 0.0005, 0.043, 0.454, 0.043, 0.766, 0.217};
// Field pairs with latent interactions, wide fields included.
constexpr std::array<std::pair<int, int>, 15> kPresetPairs = {{{0, 4},
                                                               {1, 7},
                                                               {5, 13},
                                                               {6, 10},
                                                               {8, 16},
                                                               {12, 14},
                                                               {17, 18},
                                                               {19, 21},
                                                               {22, 24},
                                                               {4, 25},
                                                               {2, 5},
                                                               {3, 13},
                                                               {11, 1},
                                                               {15, 8},
                                                               {20, 16}}};

struct Profile {
  const char* name;
  uint64_t salt;  // mixed with the seed: same seed, different preset => other stream
  double ctr;
  uint64_t drift_every;
  double drift_fraction;
  double signal;
  double vocab_scale;       // of kCriteoVocab, before the cap
  double zipf_lo, zipf_hi;  // per-field exponent, uniform in [lo, hi]
  double missing_scale;     // of kCriteoCatMissing / kCriteoIntMissing, capped at 0.95
};

constexpr std::array<Profile, 3> kProfiles = {{
    {"criteo_a", 0xa11ce5eedULL, 0.035, 500'000, 0.05, 0.8, 1.0, 1.05, 1.15, 1.0},
    {"criteo_b", 0xb0b5eedULL, 0.25, 500'000, 0.05, 0.8, 0.33, 1.05, 1.25, 1.25},
    {"criteo_c", 0xc0c05eedULL, 0.03, 100'000, 0.1, 0.8, 1.0, 1.15, 1.25, 1.0},
}};

const Profile* FindProfile(std::string_view name) {
  for (const Profile& p : kProfiles)
    if (name == p.name) return &p;
  return nullptr;
}

struct LazyField {
  ZipfSampler zipf;
  double exponent = 0;
  double missing_rate = 0;
  uint32_t missing_threshold = 0;  // missing if 32 random bits < this
  float effect_sd = 0;
  float missing_effect = 0;
  bool has_latent = false;
  uint64_t salt = 0;            // per-id parameters are functions of MixKey(salt ^ id)
  uint32_t next_item = 0;       // id of the next new item
  std::vector<uint32_t> items;  // rank -> id alive at that rank

  float Effect(uint32_t item) const {
    return static_cast<float>(effect_sd * Rng::NormalFromBits(MixKey(salt ^ item)));
  }
  // Components uniform with variance 1/kLatentDim, so <v_a, v_b> has sd 1/2.
  void Latent(uint32_t item, float* v) const {
    const uint64_t h = MixKey(salt ^ (uint64_t{1} << 40) ^ item);
    for (int k = 0; k < kLatentDim; ++k) {
      const double u = static_cast<double>((h >> (16 * k)) & 0xffff) / 65536.0;
      v[k] = static_cast<float>((u - 0.5) * 1.7320508075688772);
    }
  }
};

struct PresetRow {
  std::array<int32_t, kInts> ints;
  std::array<uint32_t, kCats> item;
  std::array<bool, kCats> present;
};

class PresetStream final : public StreamImpl {
 public:
  PresetStream(const GeneratorOptions& options, const Profile& profile);

  int Append(std::string* out, float* true_p, bool newline) override;
  uint64_t Rows() const override { return rows_; }
  uint64_t Drifts() const override { return drifts_; }
  double Bias() const override { return bias_; }
  std::vector<CategoricalFieldInfo> Fields() const override;

 private:
  double Draw(Rng& r, PresetRow* d) const;
  void Drift();
  void Calibrate();

  GeneratorOptions options_;
  uint64_t structure_seed_;
  Rng rng_{0};
  uint64_t rows_ = 0;
  uint64_t drifts_ = 0;
  double bias_ = 0;
  double interaction_scale_ = 0;
  std::array<LazyField, kCats> cats_;
  std::array<IntField, kInts> ints_;
};

PresetStream::PresetStream(const GeneratorOptions& options, const Profile& profile)
    : options_(options), structure_seed_(MixKey(options.seed ^ profile.salt)) {
  Rng setup{MixKey(structure_seed_ ^ 0x5eed)};
  rng_.s = MixKey(structure_seed_);
  const double signal = options.signal;
  const uint32_t cap = std::min(kMaxPresetVocab, options.max_vocab);
  for (int f = 0; f < kCats; ++f) {
    LazyField& c = cats_[f];
    const double scaled = std::max(2.0, std::round(kCriteoVocab[f] * profile.vocab_scale));
    const uint32_t vocab = static_cast<uint32_t>(std::min<double>(scaled, cap));
    c.missing_rate = std::min(0.95, kCriteoCatMissing[f] * profile.missing_scale);
    c.missing_threshold = static_cast<uint32_t>(c.missing_rate * 4294967296.0);
    c.effect_sd = static_cast<float>(signal * 0.32 * (0.5 + setup.Uniform()));
    c.missing_effect = static_cast<float>(c.effect_sd * setup.Normal());
    c.exponent = profile.zipf_lo + (profile.zipf_hi - profile.zipf_lo) * setup.Uniform();
    c.zipf.Init(vocab, c.exponent);
    c.salt = MixKey(structure_seed_ ^ (static_cast<uint64_t>(f + 1) << 48));
    c.items.resize(vocab);
    for (uint32_t r = 0; r < vocab; ++r) c.items[r] = r;
    c.next_item = vocab;
  }
  for (const auto& [a, b] : kPresetPairs) cats_[a].has_latent = cats_[b].has_latent = true;
  interaction_scale_ = signal * 0.5;
  for (int f = 0; f < kInts; ++f)
    ints_[f].Init(setup, signal, std::min(0.95, kCriteoIntMissing[f] * profile.missing_scale));
  Calibrate();
}

double PresetStream::Draw(Rng& r, PresetRow* d) const {
  for (int f = 0; f < kCats; ++f) {
    const LazyField& c = cats_[f];
    d->present[f] =
        c.missing_threshold == 0 || static_cast<uint32_t>(r.Next()) >= c.missing_threshold;
    if (!d->present[f]) continue;
    const uint32_t rank = c.zipf.Sample(r);
    __builtin_prefetch(&c.items[rank]);
    d->item[f] = rank;  // resolved to an id below, after all prefetches
  }
  double z = 0;
  for (int f = 0; f < kInts; ++f) z += ints_[f].Draw(r, &d->ints[f]);
  for (int f = 0; f < kCats; ++f) {
    const LazyField& c = cats_[f];
    if (!d->present[f]) {
      z += c.missing_effect;
      continue;
    }
    d->item[f] = c.items[d->item[f]];
    z += c.Effect(d->item[f]);
  }
  double inter = 0;
  for (const auto& [a, b] : kPresetPairs) {
    if (!d->present[a] || !d->present[b]) continue;
    float va[kLatentDim], vb[kLatentDim];
    cats_[a].Latent(d->item[a], va);
    cats_[b].Latent(d->item[b], vb);
    float dot = 0;
    for (int k = 0; k < kLatentDim; ++k) dot += va[k] * vb[k];
    inter += dot;
  }
  return z + interaction_scale_ * inter;
}

void PresetStream::Calibrate() {
  Rng side{MixKey(structure_seed_ ^ (0xca1ULL << 32) ^ drifts_)};
  std::vector<double> z(kCalibrationRows);
  PresetRow d;
  for (double& x : z) x = Draw(side, &d);
  bias_ = CalibrateBias(z, options_.ctr);
}

void PresetStream::Drift() {
  ++drifts_;
  Rng r{MixKey(structure_seed_ ^ (0xd41f7ULL << 32) ^ drifts_)};
  const double frac = options_.drift_fraction;
  for (LazyField& c : cats_) {
    const uint32_t vocab = c.zipf.vocab;
    const uint64_t changes = static_cast<uint64_t>(frac * vocab + 0.5);
    // Ids retire for good: a new id (with its own effect) takes their rank.
    for (uint64_t i = 0; i < changes; ++i) c.items[ScaleToRange(r.Next(), vocab)] = c.next_item++;
    // Popularity shifts: ids move to a rank up to a few times higher or lower.
    for (uint64_t i = 0; i < changes; ++i) {
      const uint32_t a = ScaleToRange(r.Next(), vocab);
      std::swap(c.items[a], c.items[ShiftedRank(r, a, vocab)]);
    }
    if (r.Uniform() < frac) c.missing_effect = static_cast<float>(c.effect_sd * r.Normal());
  }
  // The integer features' slopes wander too.
  for (IntField& it : ints_) {
    it.weight += options_.signal * 0.25 * std::sqrt(frac) * r.Normal();
    it.BuildTable(it.missing_rate);
  }
  Calibrate();
}

int PresetStream::Append(std::string* out, float* true_p, bool newline) {
  if (options_.drift_every != 0 && rows_ != 0 && rows_ % options_.drift_every == 0) Drift();
  PresetRow d;
  const int label = DrawLabel(rng_, bias_ + Draw(rng_, &d), true_p);
  ++rows_;
  std::array<uint64_t, kCats> items;
  for (int f = 0; f < kCats; ++f) items[f] = d.present[f] ? d.item[f] : kNoItem;
  AppendCriteoRow(label, d.ints.data(), items.data(), MixKey(structure_seed_ ^ 0xca7ULL), newline,
                  out);
  return label;
}

std::vector<CategoricalFieldInfo> PresetStream::Fields() const {
  std::vector<CategoricalFieldInfo> out;
  for (const LazyField& c : cats_) out.push_back({c.zipf.vocab, c.exponent, c.missing_rate});
  return out;
}

}  // namespace

std::unique_ptr<StreamImpl> MakePresetStream(const GeneratorOptions& options) {
  const Profile* profile = FindProfile(options.preset);
  CHECK(profile != nullptr) << "unknown preset " << options.preset;
  return std::make_unique<PresetStream>(options, *profile);
}

bool IsPresetName(std::string_view name) { return FindProfile(name) != nullptr; }

}  // namespace internal

std::vector<std::string> PresetNames() {
  std::vector<std::string> names;
  for (const internal::Profile& p : internal::kProfiles) names.emplace_back(p.name);
  return names;
}

Status ApplyPreset(std::string_view name, GeneratorOptions* options) {
  const internal::Profile* p = internal::FindProfile(name);
  if (p == nullptr) {
    std::string known;
    for (const std::string& n : PresetNames()) known += (known.empty() ? "" : ", ") + n;
    return InvalidArgumentError("unknown preset '" + std::string(name) + "' (known: " + known +
                                ")");
  }
  options->preset = p->name;
  options->ctr = p->ctr;
  options->drift_every = p->drift_every;
  options->drift_fraction = p->drift_fraction;
  options->signal = p->signal;
  return OkStatus();
}

}  // namespace eddy::worker
