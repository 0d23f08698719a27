#include "server/optimizer.h"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#if defined(__SSE__)
#include <xmmintrin.h>
#elif defined(__aarch64__) && defined(__ARM_NEON)
#include <arm_neon.h>
#endif

namespace eddy::server {
namespace {

// The kernels process 4 floats at a time with GCC/Clang vector extensions, so
// that every optimizer runs vectorized whatever the build flags: GCC does not
// vectorize std::sqrt unless -fno-math-errno is given. A row's last dim % 4
// elements go through the same code with partial loads and stores.
using V = float __attribute__((vector_size(16)));
using VI = int32_t __attribute__((vector_size(16)));
constexpr size_t kLanes = 4;

inline V Load(const float* p, size_t lanes) {
  V v = {};
  std::memcpy(&v, p, lanes * sizeof(float));
  return v;
}
inline void Store(float* p, V v, size_t lanes) { std::memcpy(p, &v, lanes * sizeof(float)); }

inline V Sqrt(V x) {
#if defined(__SSE__)
  return _mm_sqrt_ps(x);
#elif defined(__aarch64__) && defined(__ARM_NEON)
  return vsqrtq_f32(x);
#else
  V r;
  for (size_t j = 0; j < kLanes; ++j) r[j] = std::sqrt(x[j]);
  return r;
#endif
}

inline V Abs(V x) { return reinterpret_cast<V>(reinterpret_cast<VI>(x) & 0x7fffffff); }

// |mag| with the sign of `sign`.
inline V CopySign(V mag, V sign) {
  return reinterpret_cast<V>((reinterpret_cast<VI>(mag) & 0x7fffffff) |
                             (reinterpret_cast<VI>(sign) & static_cast<int32_t>(0x80000000u)));
}

// Calls step(i, kLanes) for every full group of lanes of [0, dim), then
// step(i, dim - i) for the rest. `step` is inlined, so the full-width calls use
// plain vector loads and stores.
template <typename Step>
inline void ForEachLaneGroup(size_t dim, Step&& step) {
  size_t i = 0;
  for (; i + kLanes <= dim; i += kLanes) step(i, kLanes);
  if (i < dim) step(i, dim - i);
}

class Sgd final : public Optimizer {
 public:
  explicit Sgd(const proto::OptimizerConfig& c)
      : Optimizer(c), lr_(c.learning_rate()), l2_(c.l2()) {}

  size_t StateSize(size_t) const override { return 0; }
  void InitState(const float*, float*, size_t) const override {}

  void Apply(float* w, float*, const float* grad, size_t dim) const override {
    const float lr = lr_, l2 = l2_;
    ForEachLaneGroup(dim, [&](size_t i, size_t n) {
      V wv = Load(w + i, n);
      V g = Load(grad + i, n) + l2 * wv;
      Store(w + i, wv - lr * g, n);
    });
  }

 private:
  const float lr_, l2_;
};

// State: acc[dim].
class Adagrad final : public Optimizer {
 public:
  explicit Adagrad(const proto::OptimizerConfig& c)
      : Optimizer(c),
        lr_(c.learning_rate()),
        eps_(c.epsilon()),
        l2_(c.l2()),
        acc0_(c.initial_accumulator()) {}

  size_t StateSize(size_t dim) const override { return dim; }

  void InitState(const float*, float* state, size_t dim) const override {
    for (size_t i = 0; i < dim; ++i) state[i] = acc0_;
  }

  void Apply(float* w, float* acc, const float* grad, size_t dim) const override {
    const float lr = lr_, eps = eps_, l2 = l2_;
    ForEachLaneGroup(dim, [&](size_t i, size_t n) {
      V wv = Load(w + i, n);
      V g = Load(grad + i, n) + l2 * wv;
      V a = Load(acc + i, n) + g * g;
      Store(acc + i, a, n);
      Store(w + i, wv - lr * g / (Sqrt(a) + eps), n);
    });
  }

 private:
  const float lr_, eps_, l2_, acc0_;
};

// State: m[dim], v[dim], t (the row's step count, exact up to 2^24 and then
// saturating, by which point the bias correction is 1 to float precision for
// any practical beta2).
class Adam final : public Optimizer {
 public:
  explicit Adam(const proto::OptimizerConfig& c)
      : Optimizer(c),
        lr_(c.learning_rate()),
        b1_(c.beta1()),
        b2_(c.beta2()),
        eps_(c.epsilon()),
        l2_(c.l2()) {
    lr_at_.resize(kTableSize);
    for (size_t t = 1; t < kTableSize; ++t) lr_at_[t] = ComputeLr(static_cast<double>(t));
  }

  size_t StateSize(size_t dim) const override { return 2 * dim + 1; }

  void InitState(const float*, float* state, size_t dim) const override {
    std::memset(state, 0, StateSize(dim) * sizeof(float));
  }

  void Apply(float* w, float* state, const float* grad, size_t dim) const override {
    float* m = state;
    float* v = state + dim;
    const float t = state[2 * dim] + 1.0f;
    state[2 * dim] = t;
    const float lr_t = t < static_cast<float>(kTableSize) ? lr_at_[static_cast<size_t>(t)]
                                                          : ComputeLr(static_cast<double>(t));
    const float b1 = b1_, b2 = b2_, c1 = 1.0f - b1_, c2 = 1.0f - b2_, eps = eps_, l2 = l2_;
    ForEachLaneGroup(dim, [&](size_t i, size_t n) {
      V wv = Load(w + i, n);
      V g = Load(grad + i, n) + l2 * wv;
      V mv = b1 * Load(m + i, n) + c1 * g;
      V vv = b2 * Load(v + i, n) + c2 * (g * g);
      Store(m + i, mv, n);
      Store(v + i, vv, n);
      Store(w + i, wv - lr_t * mv / (Sqrt(vv) + eps), n);
    });
  }

 private:
  static constexpr size_t kTableSize = 4096;  // bias-corrected rates precomputed for t < this

  float ComputeLr(double t) const {
    return static_cast<float>(lr_ * std::sqrt(1.0 - std::pow(static_cast<double>(b2_), t)) /
                              (1.0 - std::pow(static_cast<double>(b1_), t)));
  }

  const double lr_;
  const float b1_, b2_, eps_, l2_;
  std::vector<float> lr_at_;  // lr_at_[t] for 1 <= t < kTableSize
};

// State: z[dim], n[dim].
class Ftrl final : public Optimizer {
 public:
  explicit Ftrl(const proto::OptimizerConfig& c)
      : Optimizer(c),
        inv_alpha_(1.0f / c.learning_rate()),
        beta_(c.ftrl_beta()),
        l1_(c.l1()),
        l2_(c.l2()),
        n0_(c.initial_accumulator()) {}

  size_t StateSize(size_t dim) const override { return 2 * dim; }

  void InitState(const float* w, float* state, size_t dim) const override {
    // Chooses z so that the closed form gives back w: for w != 0,
    // z = -(w * denom + sign(w) * l1).
    const double denom =
        (static_cast<double>(beta_) + std::sqrt(static_cast<double>(n0_))) * inv_alpha_ + l2_;
    float* z = state;
    float* n = state + dim;
    for (size_t i = 0; i < dim; ++i) {
      const double wi = w[i];
      const double sign = wi > 0 ? 1.0 : (wi < 0 ? -1.0 : 0.0);
      z[i] = static_cast<float>(-(wi * denom + sign * l1_));
      n[i] = n0_;
    }
  }

  void Apply(float* w, float* state, const float* grad, size_t dim) const override {
    float* z = state;
    float* n = state + dim;
    const float inv_alpha = inv_alpha_, beta = beta_, l1 = l1_, l2 = l2_;
    ForEachLaneGroup(dim, [&](size_t i, size_t lanes) {
      V g = Load(grad + i, lanes);
      V wv = Load(w + i, lanes);
      V nv = Load(n + i, lanes);
      V n_new = nv + g * g;
      V sq_new = Sqrt(n_new);
      V sigma = (sq_new - Sqrt(nv)) * inv_alpha;
      V zv = Load(z + i, lanes) + g - sigma * wv;
      Store(z + i, zv, lanes);
      Store(n + i, n_new, lanes);
      V denom = (beta + sq_new) * inv_alpha + l2;
      V az = Abs(zv);
      V shrunk = CopySign(az - l1, zv);
      // Exact +0 where |z| <= l1 (the mask also drops a 0/0 there).
      VI keep = az > l1;
      Store(w + i, reinterpret_cast<V>(reinterpret_cast<VI>(-shrunk / denom) & keep), lanes);
    });
  }

 private:
  const float inv_alpha_, beta_, l1_, l2_, n0_;
};

// A row of `head_dim` floats updated by `head`, then the rest by `rest`.
class SplitRow final : public Optimizer {
 public:
  SplitRow(const proto::OptimizerConfig& c, size_t head_dim, std::unique_ptr<Optimizer> head,
           std::unique_ptr<Optimizer> rest)
      : Optimizer(c), head_dim_(head_dim), head_(std::move(head)), rest_(std::move(rest)) {}

  size_t StateSize(size_t dim) const override {
    return head_->StateSize(head_dim_) + rest_->StateSize(dim - head_dim_);
  }
  void InitState(const float* w, float* state, size_t dim) const override {
    head_->InitState(w, state, head_dim_);
    rest_->InitState(w + head_dim_, state + head_->StateSize(head_dim_), dim - head_dim_);
  }
  void Apply(float* w, float* state, const float* grad, size_t dim) const override {
    head_->Apply(w, state, grad, head_dim_);
    rest_->Apply(w + head_dim_, state + head_->StateSize(head_dim_), grad + head_dim_,
                 dim - head_dim_);
  }

 private:
  const size_t head_dim_;
  const std::unique_ptr<Optimizer> head_, rest_;
};

}  // namespace

StatusOr<std::unique_ptr<Optimizer>> CreateRowOptimizer(const proto::TableConfig& table) {
  ASSIGN_OR_RETURN(std::unique_ptr<Optimizer> rest, Optimizer::Create(table.optimizer()));
  const uint32_t h = table.head().dim();
  if (table.dense() || h == 0) return rest;
  if (h >= table.dim()) {
    return InvalidArgumentError("head=" + std::to_string(h) +
                                " must be smaller than dim=" + std::to_string(table.dim()));
  }
  StatusOr<std::unique_ptr<Optimizer>> head = Optimizer::Create(table.head().optimizer());
  if (!head.ok()) return head.status().WithContext("the row head");
  return std::unique_ptr<Optimizer>(
      std::make_unique<SplitRow>(table.optimizer(), h, std::move(head).value(), std::move(rest)));
}

StatusOr<std::unique_ptr<Optimizer>> Optimizer::Create(const proto::OptimizerConfig& config) {
  const std::string& kind = config.kind();
  if (kind != "ftrl" && config.l1() != 0) {
    return InvalidArgumentError("l1 is only supported by the ftrl optimizer, not by '" + kind +
                                "'");
  }
  if (kind == "sgd") return std::unique_ptr<Optimizer>(std::make_unique<Sgd>(config));
  if (kind == "adagrad") return std::unique_ptr<Optimizer>(std::make_unique<Adagrad>(config));
  if (kind == "adam") return std::unique_ptr<Optimizer>(std::make_unique<Adam>(config));
  if (kind == "ftrl") return std::unique_ptr<Optimizer>(std::make_unique<Ftrl>(config));
  return InvalidArgumentError("unknown optimizer '" + kind + "' (sgd, adagrad, adam, ftrl)");
}

}  // namespace eddy::server
