#include "models/init.h"

#include <algorithm>
#include <cmath>

namespace eddy::models {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1) from 24 random bits: exact in float, portable.
float UnitUniform(uint64_t seed, uint64_t tensor, uint64_t index) {
  const uint64_t bits = SplitMix64(SplitMix64(seed ^ SplitMix64(tensor)) + index) >> 40;
  return static_cast<float>(bits) * (2.0f / 16777216.0f) - 1.0f;
}

}  // namespace

int64_t DenseParamSpec::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

Status InitDenseParams(std::span<const DenseParamSpec> specs, uint64_t seed,
                       std::span<const std::span<float>> out) {
  if (specs.size() != out.size()) {
    return InvalidArgumentError("InitDenseParams: " + std::to_string(out.size()) + " buffers for " +
                                std::to_string(specs.size()) + " tensors");
  }
  for (size_t t = 0; t < specs.size(); ++t) {
    const DenseParamSpec& spec = specs[t];
    std::span<float> buf = out[t];
    if (static_cast<int64_t>(buf.size()) != spec.size()) {
      return InvalidArgumentError("InitDenseParams: tensor " + spec.name + " needs " +
                                  std::to_string(spec.size()) + " floats, got " +
                                  std::to_string(buf.size()));
    }
    float bound = 0.0f;
    switch (spec.init) {
      case Initializer::kZeros:
        break;
      case Initializer::kHeUniform:
        bound = std::sqrt(6.0f / static_cast<float>(std::max<int64_t>(spec.fan_in, 1)));
        break;
      case Initializer::kXavierUniform:
        bound =
            std::sqrt(6.0f / static_cast<float>(std::max<int64_t>(spec.fan_in + spec.fan_out, 1)));
        break;
    }
    for (size_t i = 0; i < buf.size(); ++i) {
      buf[i] = bound == 0.0f ? 0.0f : bound * UnitUniform(seed, t, i);
    }
  }
  return OkStatus();
}

}  // namespace eddy::models
