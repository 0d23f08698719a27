// Server-side optimizers (SGD, AdaGrad, Adam, FTRL-proximal). An optimizer holds
// only hyper-parameters; the per-parameter state lives next to each row's weights
// and is passed in by the caller.
// Thread-safety: immutable after Create(); Apply/InitState may run concurrently
// on different rows.
#ifndef EDDY_SERVER_OPTIMIZER_H_
#define EDDY_SERVER_OPTIMIZER_H_

#include <cstddef>
#include <memory>

#include "common/proto/eddy.pb.h"
#include "common/status.h"

namespace eddy::server {

// One optimizer kind with its hyper-parameters. A "row" is `dim` contiguous
// weights with StateSize(dim) contiguous floats of state (sparse tables use one
// row per key, dense tensors one per block of elements).
//
// Update rules (g = gradient, lr = learning_rate):
//   sgd      w -= lr * g
//   adagrad  acc += g^2;  w -= lr * g / (sqrt(acc) + eps);      acc starts at acc0
//   adam     t += 1; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
//            w -= lr * sqrt(1-b2^t)/(1-b1^t) * m / (sqrt(v) + eps)
//            (t is per row: a row's bias correction counts that row's updates)
//   ftrl     FTRL-proximal (McMahan et al. 2013), alpha = lr, beta = ftrl_beta:
//            sigma = (sqrt(n+g^2) - sqrt(n)) / alpha; z += g - sigma w; n += g^2;
//            w = |z| <= l1 ? 0 : -(z - sign(z) l1) / ((beta + sqrt(n)) / alpha + l2)
//            n starts at acc0 (initial_accumulator).
// For sgd, adagrad and adam a non-zero l2 is coupled weight decay, g += l2 * w
// (the gradient of 0.5 * l2 * |w|^2, as PyTorch's weight_decay). It is lazy on
// sparse rows: a row decays only when it receives a gradient. l1 is only
// supported by ftrl (whose proximal step yields exact zeros); Create() rejects
// l1 > 0 for the other kinds rather than ignore it.
class Optimizer {
 public:
  // Requires a config accepted by eddy::ValidateTableConfig. Errors:
  // InvalidArgument for an unknown kind or l1 > 0 with sgd/adagrad/adam.
  static StatusOr<std::unique_ptr<Optimizer>> Create(const proto::OptimizerConfig& config);

  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;
  virtual ~Optimizer() = default;

  // Floats of state per row of `dim` weights.
  virtual size_t StateSize(size_t dim) const = 0;
  // Initialises the state of a new row whose initial weights are `w`. Afterwards
  // the weights array still holds w (FTRL chooses z so that its closed form gives w).
  virtual void InitState(const float* w, float* state, size_t dim) const = 0;
  // One gradient step on a row. `w`, `state` and `grad` must not overlap.
  virtual void Apply(float* w, float* state, const float* grad, size_t dim) const = 0;

  const proto::OptimizerConfig& config() const { return config_; }

 protected:
  explicit Optimizer(const proto::OptimizerConfig& config) : config_(config) {}

 private:
  proto::OptimizerConfig config_;
};

// The optimizer of a sparse table's rows: Optimizer::Create(table.optimizer())
// or, when the table has a head (proto::RowHead), one that applies the head's
// optimizer to each row's first head.dim floats and the table's to the rest.
// State per row: the head's state, then the rest's. Errors as for Create.
StatusOr<std::unique_ptr<Optimizer>> CreateRowOptimizer(const proto::TableConfig& table);

}  // namespace eddy::server

#endif  // EDDY_SERVER_OPTIMIZER_H_
