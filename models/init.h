// Dense parameter descriptions (name, shape, initializer) and their deterministic
// initialisation, so a worker can create and seed the dense tensors on the servers.
// Thread-safety: pure functions over caller-owned buffers.
#ifndef EDDY_MODELS_INIT_H_
#define EDDY_MODELS_INIT_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace eddy::models {

enum class Initializer {
  kZeros,
  kHeUniform,      // U(-b, b), b = sqrt(6 / fan_in): ReLU layers.
  kXavierUniform,  // U(-b, b), b = sqrt(6 / (fan_in + fan_out)): linear output layer.
};

// One dense parameter tensor of a model, row-major.
struct DenseParamSpec {
  std::string name;            // e.g. "bias", "mlp.0.weight"
  std::vector<int64_t> shape;  // e.g. {out, in} for a weight matrix
  Initializer init = Initializer::kZeros;
  int64_t fan_in = 0;
  int64_t fan_out = 0;

  int64_t size() const;
};

// Fills `out[i]` (exactly specs[i].size() floats each) from specs[i].init. Values depend
// only on (seed, i, element index): identical on every machine and compiler.
// Errors: InvalidArgument if the number or sizes of buffers do not match.
[[nodiscard]] Status InitDenseParams(std::span<const DenseParamSpec> specs, uint64_t seed,
                                     std::span<const std::span<float>> out);

}  // namespace eddy::models

#endif  // EDDY_MODELS_INIT_H_
