// Numerically stable sigmoid and binary logloss on logits.
// Thread-safety: pure functions.
#ifndef EDDY_MODELS_LOSS_H_
#define EDDY_MODELS_LOSS_H_

#include <cmath>

namespace eddy::models {

// 1 / (1 + exp(-z)) without overflow for any finite z.
inline float Sigmoid(float z) {
  if (z >= 0.0f) return 1.0f / (1.0f + std::exp(-z));
  const float e = std::exp(z);
  return e / (1.0f + e);
}

// -[y log p + (1-y) log(1-p)] with p = Sigmoid(z), computed from z directly:
// max(z, 0) - z*y + log1p(exp(-|z|)). Finite for any finite z; y in [0, 1].
inline float LogLoss(float z, float y) {
  return std::fmax(z, 0.0f) - z * y + std::log1p(std::exp(-std::fabs(z)));
}

}  // namespace eddy::models

#endif  // EDDY_MODELS_LOSS_H_
