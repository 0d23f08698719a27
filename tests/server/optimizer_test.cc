#include "server/optimizer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace eddy::server {
namespace {

proto::OptimizerConfig Config(const std::string& kind, float lr) {
  proto::OptimizerConfig c;
  c.set_kind(kind);
  c.set_learning_rate(lr);
  return c;
}

// Adam with the usual hyper-parameters (b1 0.9, b2 0.999, eps 1e-8).
proto::OptimizerConfig AdamConfig(float lr) {
  proto::OptimizerConfig c = Config("adam", lr);
  c.set_beta1(0.9f);
  c.set_beta2(0.999f);
  c.set_epsilon(1e-8f);
  return c;
}

std::unique_ptr<Optimizer> Make(const proto::OptimizerConfig& c) {
  auto opt = Optimizer::Create(c);
  EXPECT_TRUE(opt.ok()) << opt.status();
  return std::move(opt).value();
}

// Dimensions around the 4-float vector width, including non-multiples of 8.
const size_t kDims[] = {1, 3, 4, 5, 8, 13, 16, 17, 33};

std::vector<std::vector<float>> Gradients(size_t dim, int steps, float scale, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<std::vector<float>> grads(steps, std::vector<float>(dim));
  for (auto& g : grads) {
    for (float& x : g) x = normal(rng);
  }
  return grads;
}

std::vector<float> InitialWeights(size_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> uniform(-0.5f, 0.5f);
  std::vector<float> w(dim);
  for (float& x : w) x = uniform(rng);
  return w;
}

// Runs `steps` updates through the optimizer; returns the final weights.
std::vector<float> RunOptimizer(const Optimizer& opt, std::vector<float> w,
                                const std::vector<std::vector<float>>& grads) {
  const size_t dim = w.size();
  std::vector<float> state(opt.StateSize(dim));
  opt.InitState(w.data(), state.data(), dim);
  for (const auto& g : grads) opt.Apply(w.data(), state.data(), g.data(), dim);
  return w;
}

void ExpectNear(const std::vector<float>& got, const std::vector<double>& want, double rel,
                const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_NEAR(got[i], want[i], rel * std::max(1.0, std::abs(want[i])))
        << what << " element " << i;
  }
}

TEST(OptimizerTest, CreateRejectsUnknownKindAndL1OutsideFtrl) {
  EXPECT_EQ(Optimizer::Create(Config("rmsprop", 0.1f)).status().code(),
            StatusCode::kInvalidArgument);
  for (const char* kind : {"sgd", "adagrad", "adam"}) {
    proto::OptimizerConfig c = Config(kind, 0.1f);
    c.set_l1(0.01f);
    auto opt = Optimizer::Create(c);
    EXPECT_EQ(opt.status().code(), StatusCode::kInvalidArgument) << kind;
    EXPECT_NE(opt.status().message().find("l1"), std::string::npos);
  }
  proto::OptimizerConfig ftrl = Config("ftrl", 0.1f);
  ftrl.set_l1(0.01f);
  EXPECT_TRUE(Optimizer::Create(ftrl).ok());
}

TEST(OptimizerTest, StateSizes) {
  EXPECT_EQ(Make(Config("sgd", 0.1f))->StateSize(16), 0u);
  EXPECT_EQ(Make(Config("adagrad", 0.1f))->StateSize(16), 16u);
  EXPECT_EQ(Make(Config("adam", 0.1f))->StateSize(16), 33u);
  EXPECT_EQ(Make(Config("ftrl", 0.1f))->StateSize(16), 32u);
}

TEST(OptimizerTest, SgdMatchesReference) {
  for (float l2 : {0.0f, 0.1f}) {
    proto::OptimizerConfig c = Config("sgd", 0.05f);
    c.set_l2(l2);
    auto opt = Make(c);
    for (size_t dim : kDims) {
      auto w0 = InitialWeights(dim, dim);
      auto grads = Gradients(dim, 20, 1.0f, dim + 100);
      std::vector<double> ref(w0.begin(), w0.end());
      for (const auto& g : grads) {
        for (size_t i = 0; i < dim; ++i) ref[i] -= 0.05 * (g[i] + double{l2} * ref[i]);
      }
      ExpectNear(RunOptimizer(*opt, w0, grads), ref, 1e-5, "sgd");
    }
  }
}

TEST(OptimizerTest, AdagradMatchesReference) {
  for (float l2 : {0.0f, 0.01f}) {
    proto::OptimizerConfig c = Config("adagrad", 0.1f);
    c.set_epsilon(1e-6f);
    c.set_initial_accumulator(0.1f);
    c.set_l2(l2);
    auto opt = Make(c);
    for (size_t dim : kDims) {
      auto w0 = InitialWeights(dim, dim);
      auto grads = Gradients(dim, 30, 1.0f, dim + 200);
      std::vector<double> ref(w0.begin(), w0.end()), acc(dim, double{0.1f});
      for (const auto& g : grads) {
        for (size_t i = 0; i < dim; ++i) {
          const double gi = g[i] + double{l2} * ref[i];
          acc[i] += gi * gi;
          ref[i] -= double{0.1f} * gi / (std::sqrt(acc[i]) + double{1e-6f});
        }
      }
      ExpectNear(RunOptimizer(*opt, w0, grads), ref, 1e-5, "adagrad");
    }
  }
}

TEST(OptimizerTest, AdamMatchesReferenceWithBiasCorrection) {
  auto opt = Make(AdamConfig(0.01f));
  const double b1 = double{0.9f}, b2 = double{0.999f}, lr = double{0.01f}, eps = double{1e-8f};
  for (size_t dim : kDims) {
    auto w0 = InitialWeights(dim, dim);
    // 5000 steps also crosses the precomputed bias-correction table.
    auto grads = Gradients(dim, 5000, 0.5f, dim + 300);
    std::vector<double> ref(w0.begin(), w0.end()), m(dim, 0), v(dim, 0);
    for (size_t t = 1; t <= grads.size(); ++t) {
      const double lr_t =
          lr * std::sqrt(1 - std::pow(b2, double(t))) / (1 - std::pow(b1, double(t)));
      for (size_t i = 0; i < dim; ++i) {
        const double g = grads[t - 1][i];
        m[i] = b1 * m[i] + (1 - b1) * g;
        v[i] = b2 * v[i] + (1 - b2) * g * g;
        ref[i] -= lr_t * m[i] / (std::sqrt(v[i]) + eps);
      }
    }
    ExpectNear(RunOptimizer(*opt, w0, grads), ref, 2e-4, "adam");
  }
}

TEST(OptimizerTest, AdamFirstStepMovesEachWeightByLearningRate) {
  // With bias correction, the first step is lr * g / |g| (up to eps).
  auto opt = Make(AdamConfig(0.01f));
  std::vector<float> w = {1, 1, 1}, state(opt->StateSize(3));
  opt->InitState(w.data(), state.data(), 3);
  const float g[3] = {3.0f, -0.5f, 1e-3f};
  opt->Apply(w.data(), state.data(), g, 3);
  EXPECT_NEAR(w[0], 0.99f, 1e-6f);
  EXPECT_NEAR(w[1], 1.01f, 1e-6f);
  EXPECT_NEAR(w[2], 0.99f, 1e-5f);
}

TEST(OptimizerTest, AdamStepCountIsPerRow) {
  auto opt = Make(AdamConfig(0.01f));
  const size_t dim = 4;
  std::vector<float> a(dim, 0.f), b(dim, 0.f), sa(opt->StateSize(dim)), sb(opt->StateSize(dim));
  opt->InitState(a.data(), sa.data(), dim);
  opt->InitState(b.data(), sb.data(), dim);
  const std::vector<float> g(dim, 1.0f);
  for (int i = 0; i < 10; ++i) opt->Apply(a.data(), sa.data(), g.data(), dim);
  // Row b's first update is a first step whatever happened to row a.
  opt->Apply(b.data(), sb.data(), g.data(), dim);
  EXPECT_NEAR(b[0], -0.01f, 1e-6f);
  EXPECT_EQ(sa[2 * dim], 10.0f);
  EXPECT_EQ(sb[2 * dim], 1.0f);
}

struct FtrlParams {
  double alpha, beta, l1, l2, n0;
};

std::vector<double> FtrlReference(const FtrlParams& p, const std::vector<float>& w0,
                                  const std::vector<std::vector<float>>& grads) {
  const size_t dim = w0.size();
  std::vector<double> w(w0.begin(), w0.end()), z(dim), n(dim, p.n0);
  for (size_t i = 0; i < dim; ++i) {
    const double denom = (p.beta + std::sqrt(p.n0)) / p.alpha + p.l2;
    const double sign = w[i] > 0 ? 1 : (w[i] < 0 ? -1 : 0);
    z[i] = -(w[i] * denom + sign * p.l1);
  }
  for (const auto& g : grads) {
    for (size_t i = 0; i < dim; ++i) {
      const double gi = g[i];
      const double sigma = (std::sqrt(n[i] + gi * gi) - std::sqrt(n[i])) / p.alpha;
      z[i] += gi - sigma * w[i];
      n[i] += gi * gi;
      w[i] = std::abs(z[i]) <= p.l1 ? 0.0
                                    : -(z[i] - (z[i] > 0 ? 1 : -1) * p.l1) /
                                          ((p.beta + std::sqrt(n[i])) / p.alpha + p.l2);
    }
  }
  return w;
}

proto::OptimizerConfig FtrlConfig(const FtrlParams& p) {
  proto::OptimizerConfig c = Config("ftrl", static_cast<float>(p.alpha));
  c.set_ftrl_beta(static_cast<float>(p.beta));
  c.set_l1(static_cast<float>(p.l1));
  c.set_l2(static_cast<float>(p.l2));
  c.set_initial_accumulator(static_cast<float>(p.n0));
  return c;
}

TEST(OptimizerTest, FtrlMatchesReference) {
  const FtrlParams params[] = {
      {0.1, 1.0, 0.0, 0.0, 0.0},
      {0.05, 1.0, 0.01, 0.1, 0.0},
      {0.5, 0.5, 0.001, 1.0, 0.1},
  };
  for (const FtrlParams& p : params) {
    // The params are exactly representable as floats or close enough.
    FtrlParams pf{float(p.alpha), float(p.beta), float(p.l1), float(p.l2), float(p.n0)};
    auto opt = Make(FtrlConfig(p));
    for (size_t dim : kDims) {
      auto w0 = InitialWeights(dim, dim);
      auto grads = Gradients(dim, 40, 1.0f, dim + 400);
      ExpectNear(RunOptimizer(*opt, w0, grads), FtrlReference(pf, w0, grads), 1e-5, "ftrl");
    }
  }
}

TEST(OptimizerTest, FtrlL1GivesExactZeros) {
  const FtrlParams p{0.1, 1.0, 1.0, 0.5, 0.0};
  auto opt = Make(FtrlConfig(p));
  for (size_t dim : kDims) {
    // Small gradients: |z| stays below l1, every weight is exactly +0.
    auto small = Gradients(dim, 10, 0.01f, dim + 500);
    std::vector<float> w = RunOptimizer(*opt, std::vector<float>(dim, 0.0f), small);
    for (size_t i = 0; i < dim; ++i) {
      EXPECT_EQ(w[i], 0.0f) << "dim " << dim << " element " << i;
      EXPECT_FALSE(std::signbit(w[i]));
    }
    // Large consistent gradients push |z| past l1: non-zero, as the reference.
    std::vector<std::vector<float>> large(5, std::vector<float>(dim));
    for (auto& g : large) {
      for (size_t i = 0; i < dim; ++i) g[i] = (i % 2 ? 1.0f : -1.0f);
    }
    w = RunOptimizer(*opt, std::vector<float>(dim, 0.0f), large);
    auto ref = FtrlReference({float(p.alpha), float(p.beta), float(p.l1), float(p.l2), 0.0},
                             std::vector<float>(dim, 0.0f), large);
    for (size_t i = 0; i < dim; ++i) {
      EXPECT_NE(w[i], 0.0f);
      EXPECT_NEAR(w[i], ref[i], 1e-5 * std::max(1.0, std::abs(ref[i])));
    }
  }
}

TEST(OptimizerTest, FtrlInitStateKeepsInitialWeights) {
  // A zero gradient changes neither z nor n, so the closed form must give back
  // the initial weights chosen by the initializer.
  auto opt = Make(FtrlConfig({0.05, 1.0, 0.01, 0.1, 0.1}));
  for (size_t dim : kDims) {
    auto w0 = InitialWeights(dim, dim + 600);
    w0[0] = 0.0f;
    std::vector<std::vector<float>> zero(1, std::vector<float>(dim, 0.0f));
    auto w = RunOptimizer(*opt, w0, zero);
    for (size_t i = 0; i < dim; ++i) EXPECT_NEAR(w[i], w0[i], 1e-6f) << i;
  }
}

TEST(OptimizerTest, ConfigIsKept) {
  proto::OptimizerConfig c = Config("adagrad", 0.25f);
  EXPECT_EQ(Make(c)->config().learning_rate(), 0.25f);
  EXPECT_EQ(Make(c)->config().kind(), "adagrad");
}

}  // namespace
}  // namespace eddy::server

namespace eddy::server {
namespace {

// A table whose rows are `dim` floats, the first `head` with AdaGrad and the
// rest with Adam.
proto::TableConfig HeadTable(uint32_t dim, uint32_t head) {
  proto::TableConfig t;
  t.set_name("emb");
  t.set_dim(dim);
  *t.mutable_optimizer() = AdamConfig(0.001f);
  t.mutable_head()->set_dim(head);
  *t.mutable_head()->mutable_optimizer() = Config("adagrad", 0.05f);
  t.mutable_head()->mutable_optimizer()->set_epsilon(1e-8f);
  return t;
}

TEST(RowOptimizerTest, HeadAndRestUpdateLikeTheirOwnOptimizers) {
  for (uint32_t head : {1u, 3u, 5u}) {
    const uint32_t dim = 17;
    const proto::TableConfig table = HeadTable(dim, head);
    auto row = CreateRowOptimizer(table);
    ASSERT_TRUE(row.ok()) << row.status();
    auto head_opt = Make(table.head().optimizer());
    auto rest_opt = Make(table.optimizer());
    ASSERT_EQ((*row)->StateSize(dim), head_opt->StateSize(head) + rest_opt->StateSize(dim - head));

    std::vector<float> w(dim), w_head(head), w_rest(dim - head);
    for (uint32_t i = 0; i < dim; ++i) w[i] = 0.01f * static_cast<float>(i);
    std::copy_n(w.begin(), head, w_head.begin());
    std::copy(w.begin() + head, w.end(), w_rest.begin());
    std::vector<float> state((*row)->StateSize(dim)), s_head(head_opt->StateSize(head)),
        s_rest(rest_opt->StateSize(dim - head));
    (*row)->InitState(w.data(), state.data(), dim);
    head_opt->InitState(w_head.data(), s_head.data(), head);
    rest_opt->InitState(w_rest.data(), s_rest.data(), dim - head);
    for (const std::vector<float>& g : Gradients(dim, 20, 0.3f, 7 + head)) {
      (*row)->Apply(w.data(), state.data(), g.data(), dim);
      head_opt->Apply(w_head.data(), s_head.data(), g.data(), head);
      rest_opt->Apply(w_rest.data(), s_rest.data(), g.data() + head, dim - head);
    }
    for (uint32_t i = 0; i < head; ++i) EXPECT_EQ(w[i], w_head[i]) << "head " << head << " i " << i;
    for (uint32_t i = head; i < dim; ++i) EXPECT_EQ(w[i], w_rest[i - head]) << "i " << i;
    // AdaGrad's first step moves the head by about lr; Adam's by about 0.001.
    EXPECT_NE(w[0], 0.0f);
  }
}

TEST(RowOptimizerTest, NoHeadIsThePlainOptimizerAndABadHeadIsRefused) {
  proto::TableConfig table = HeadTable(8, 0);
  auto plain = CreateRowOptimizer(table);
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ((*plain)->StateSize(8), Make(table.optimizer())->StateSize(8));
  table.mutable_head()->set_dim(8);
  EXPECT_FALSE(CreateRowOptimizer(table).ok());
  table.mutable_head()->set_dim(2);
  table.mutable_head()->mutable_optimizer()->set_kind("nope");
  EXPECT_FALSE(CreateRowOptimizer(table).ok());
}

}  // namespace
}  // namespace eddy::server
