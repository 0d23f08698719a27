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

}  // namespace eddy::worker::internal
