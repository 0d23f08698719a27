#include "server/initializer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numbers>

#include "common/partition.h"

namespace eddy::server {
namespace {

constexpr uint64_t kGolden = 0x9e3779b97f4a7c15ULL;

// The i-th output of the SplitMix64 generator whose state starts at `stream`.
inline uint64_t Draw(uint64_t stream, uint64_t i) { return MixKey(stream + i * kGolden); }

// Uniform on the open interval (0, 1) from the top 32 bits.
inline double UnitOpen(uint64_t bits32) { return (static_cast<double>(bits32) + 0.5) * 0x1p-32; }

}  // namespace

Initializer::Part Initializer::MakePart(const proto::InitializerConfig& config, uint64_t salt) {
  Part p{Kind::kZeros, config.scale(), MixKey(config.seed() ^ salt)};
  if (config.kind() == "uniform") p.kind = Kind::kUniform;
  if (config.kind() == "normal") p.kind = Kind::kNormal;
  if (p.scale == 0) p.kind = Kind::kZeros;
  return p;
}

Initializer::Initializer(const proto::InitializerConfig& config)
    : rows_(MakePart(config, 0x5ca1ab1e0ddba11ULL)),
      head_(rows_),
      dense_base_(MixKey(MixKey(config.seed()) ^ 0xde05e7e05b0a7dULL)) {}

Initializer Initializer::ForRows(const proto::TableConfig& table) {
  Initializer init(table.initializer());
  if (!table.dense() && table.head().dim() > 0) {
    init.head_dim_ = table.head().dim();
    init.head_ = MakePart(table.head().initializer(), 0x4eadc01dfeedULL);
  }
  return init;
}

void Initializer::FillRowPart(const Part& part, uint64_t key, uint64_t first, float* w, size_t n) {
  if (n == 0) return;  // w may be null
  if (part.kind == Kind::kZeros) {
    std::memset(w, 0, n * sizeof(float));
    return;
  }
  // MixKey is a bijection, so distinct keys start distinct streams.
  Fill(part, MixKey(key ^ part.row_salt), first, w, n);
}

void Initializer::FillRow(uint64_t key, float* w, size_t dim) const {
  const size_t h = std::min(head_dim_, dim);
  FillRowPart(head_, key, 0, w, h);
  FillRowPart(rows_, key, h, w + h, dim - h);
}

void Initializer::FillDense(uint64_t first_element, float* w, size_t n) const {
  if (n == 0) return;  // w may be null (an empty slice)
  if (rows_.kind == Kind::kZeros) {
    std::memset(w, 0, n * sizeof(float));
    return;
  }
  Fill(rows_, dense_base_, first_element, w, n);
}

void Initializer::Fill(const Part& part, uint64_t stream, uint64_t first, float* w, size_t n) {
  const double scale = part.scale;
  if (part.kind == Kind::kUniform) {
    for (size_t i = 0; i < n; ++i) {
      const double u = UnitOpen(Draw(stream, first + i) >> 32);
      w[i] = static_cast<float>(scale * (2.0 * u - 1.0));
    }
    return;
  }
  // Normal: element e uses draw e / 2, the cos part if e is even, sin if odd.
  const uint64_t end = first + n;
  for (uint64_t e = first; e < end;) {
    const uint64_t x = Draw(stream, e / 2);
    const double r = scale * std::sqrt(-2.0 * std::log(UnitOpen(x >> 32)));
    const double theta = 2.0 * std::numbers::pi * static_cast<double>(x & 0xffffffffULL) * 0x1p-32;
    if (e % 2 == 0) {
      w[e - first] = static_cast<float>(r * std::cos(theta));
      ++e;
      if (e == end) break;
    }
    w[e - first] = static_cast<float>(r * std::sin(theta));
    ++e;
  }
}

}  // namespace eddy::server
