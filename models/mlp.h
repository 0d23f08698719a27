// Mlp: a stack of fully connected ReLU layers on oneDNN (forward and backward), with
// its primitives built once per batch size and reused.
// Thread-safety: not thread-safe (owns a oneDNN stream and scratch); one per thread.
#ifndef EDDY_MODELS_MLP_H_
#define EDDY_MODELS_MLP_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"

namespace eddy::models {

// y = relu(W_n ... relu(W_1 x + b_1) ... + b_n), row-major x (batch x input_dim).
// Weights W_i are (out x in) row-major, biases (out); both are owned by the caller
// and passed at each call. Gradients are written into caller buffers (overwritten,
// not accumulated). Primitives and memory objects are created on the first call with
// a given batch size and reused until the batch size changes; caller buffers are
// wrapped, not copied, unless oneDNN picks a non-plain weights layout (then a reorder
// is added for that layer).
class Mlp {
 public:
  // Requires input_dim > 0 and every hidden size > 0; hidden may not be empty.
  static StatusOr<std::unique_ptr<Mlp>> Create(int input_dim, std::vector<int> hidden);
  ~Mlp();
  Mlp(const Mlp&) = delete;
  Mlp& operator=(const Mlp&) = delete;

  int input_dim() const { return input_dim_; }
  int output_dim() const { return hidden_.back(); }
  const std::vector<int>& hidden() const { return hidden_; }

  // Runs the forward pass. x: batch*input_dim; weights[i]: hidden[i]*in_i;
  // biases[i]: hidden[i]. Returns the last activation (batch x output_dim), valid
  // until the next call. x, weights and biases must stay alive and unchanged until
  // the matching Backward returns.
  // Errors: InvalidArgument on size mismatch; Internal on a oneDNN error.
  StatusOr<std::span<const float>> Forward(int batch, std::span<const float> x,
                                           std::span<const std::span<const float>> weights,
                                           std::span<const std::span<const float>> biases);

  // Back-propagates d_out (batch x output_dim) through the last Forward. Writes
  // dx (batch*input_dim; may be empty to skip it), d_weights[i] and d_biases[i].
  // Errors: FailedPrecondition without a preceding Forward; InvalidArgument on size
  // mismatch; Internal on a oneDNN error.
  Status Backward(std::span<const float> d_out, std::span<float> dx,
                  std::span<const std::span<float>> d_weights,
                  std::span<const std::span<float>> d_biases);

  // How many times primitives were (re)built: once per new batch size.
  int64_t primitive_builds() const { return primitive_builds_; }

 private:
  struct State;  // oneDNN engine, stream, per-layer primitives and memories.

  Mlp(int input_dim, std::vector<int> hidden, std::unique_ptr<State> state);
  Status Build(int batch);

  const int input_dim_;
  const std::vector<int> hidden_;
  std::unique_ptr<State> state_;
  int batch_ = 0;  // batch size the primitives are built for; 0 = none
  bool forward_done_ = false;
  int64_t primitive_builds_ = 0;
};

}  // namespace eddy::models

#endif  // EDDY_MODELS_MLP_H_
