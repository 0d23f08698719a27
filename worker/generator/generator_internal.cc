#include "worker/generator/generator_internal.h"

namespace eddy::worker::internal {

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

void ZipfSampler::Init(uint32_t vocab_size, double s) {
  vocab = vocab_size;
  head = std::min(vocab, kHeadRanks);
  std::vector<double> w(head);
  for (uint32_t r = 0; r < head; ++r) w[r] = std::pow(r + 1.0, -s);
  if (head < vocab) {
    // sum_{k=head+1}^{vocab} k^-s, by the midpoint integral (relative error < 1e-9 here).
    w.push_back((std::pow(vocab + 0.5, 1 - s) - std::pow(head + 0.5, 1 - s)) / (1 - s));
    tail_lo = std::pow(head + 1.0, 1 - s);
    tail_hi = std::pow(vocab + 1.0, 1 - s);
    tail_power = 1 / (1 - s);
  }
  alias = BuildAlias(w);
}

void IntField::Init(Rng& setup, double signal, double missing) {
  alpha = 1.1 + 1.9 * setup.Uniform();
  scale = std::exp(4 * setup.Uniform());
  weight = signal * 0.25 * setup.Normal();
  center = std::log1p(Quantile(0.5));
  BuildTable(missing);
}

void IntField::BuildTable(double missing) {
  missing_rate = missing;
  table.resize(kIntTableSize);
  for (uint32_t i = 0; i < kIntTableSize; ++i) {
    const double u = (i + 0.5) / kIntTableSize;
    if (u < missing) {
      table[i] = {kMissing, 0.0f};
    } else {
      const int64_t v = Quantile((u - missing) / (1 - missing));
      table[i] = {static_cast<int32_t>(v), Effect(v)};
    }
  }
}

double IntField::Draw(Rng& r, int32_t* value) const {
  const uint64_t x = r.Next();
  const uint32_t i = static_cast<uint32_t>(x >> (64 - kIntTableBits));
  if (i == kIntTableSize - 1 && table[i].value != kMissing) {
    // The top 1/4096 of the distribution: draw the exact heavy tail.
    const double u = 1 - (0.5 + static_cast<double>(x & 0xffffffffu)) * 0x1.0p-32 / kIntTableSize;
    const int64_t v = std::min<int64_t>(Quantile(u), INT32_MAX);
    *value = static_cast<int32_t>(v);
    return Effect(v);
  }
  *value = table[i].value;
  return table[i].effect;
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

char* AppendHex8(char* p, uint32_t v) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (int i = 7; i >= 0; --i) {
    p[i] = kHex[v & 15];
    v >>= 4;
  }
  return p + 8;
}

}  // namespace

void AppendCriteoRow(int label, const int32_t* ints, const uint64_t* items, uint64_t salt,
                     bool newline, std::string* out) {
  constexpr int kInts = ClickStreamGenerator::kNumIntegerFields;
  constexpr int kCats = ClickStreamGenerator::kNumCategoricalFields;
  // 2 + 13 * 11 + 26 * 9 bytes at most.
  constexpr size_t kMaxRow = 2 + kInts * 11 + kCats * 9 + 1;
  const size_t old = out->size();
  out->resize(old + kMaxRow);
  char* begin = out->data() + old;
  char* q = begin;
  *q++ = static_cast<char>('0' + label);
  for (int f = 0; f < kInts; ++f) {
    *q++ = '\t';
    if (ints[f] != kMissing) q = AppendUint(q, static_cast<uint32_t>(ints[f]));
  }
  for (int f = 0; f < kCats; ++f) {
    *q++ = '\t';
    if (items[f] == kNoItem) continue;
    q = AppendHex8(
        q, static_cast<uint32_t>(MixKey(salt ^ (static_cast<uint64_t>(f) << 40) ^ items[f])));
  }
  if (newline) *q++ = '\n';
  out->resize(old + static_cast<size_t>(q - begin));
}

int DrawLabel(Rng& r, double z, float* true_p) {
  const double p = 1 / (1 + std::exp(-z));
  *true_p = static_cast<float>(p);
  return r.Uniform() < p ? 1 : 0;
}

double CalibrateBias(const std::vector<double>& z, double ctr) {
  double lo = -30, hi = 30;
  for (int iter = 0; iter < 60; ++iter) {
    const double mid = (lo + hi) / 2;
    double mean = 0;
    for (double x : z) mean += 1 / (1 + std::exp(-(mid + x)));
    mean /= static_cast<double>(z.size());
    (mean < ctr ? lo : hi) = mid;
  }
  return (lo + hi) / 2;
}

}  // namespace eddy::worker::internal
