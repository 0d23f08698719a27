#include "models/ctr_model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "models/loss.h"

namespace eddy::models {
namespace {

constexpr int kB = 4, kF = 5, kK = 3, kD = 2;

// A batch and a set of dense parameters owned by the test.
struct Problem {
  ModelOptions opts;
  std::unique_ptr<CtrModel> model;
  int b = kB;
  std::vector<float> emb, linear, mask, dense, labels;
  std::vector<std::vector<float>> params;

  ModelBatch Batch() const { return {b, emb, linear, mask, dense, labels}; }
  std::vector<std::span<const float>> Params() const { return {params.begin(), params.end()}; }
  float Loss() {
    auto loss = model->Forward(Batch(), Params());
    EXPECT_TRUE(loss.ok()) << loss.status();
    return loss.ok() ? *loss : std::numeric_limits<float>::quiet_NaN();
  }
};

struct Grads {
  std::vector<float> emb, linear;
  std::vector<std::vector<float>> dense;
  ModelGradients View() {
    ModelGradients g{emb, linear, {}};
    for (auto& d : dense) g.dense.push_back(d);
    return g;
  }
};

Problem MakeProblem(ModelKind kind, uint32_t seed, int dense_dim = kD) {
  Problem p;
  p.opts.kind = kind;
  p.opts.num_fields = kF;
  p.opts.emb_dim = kK;
  p.opts.dense_dim = dense_dim;
  p.opts.hidden = {6, 5};
  auto model = CtrModel::Create(p.opts);
  EXPECT_TRUE(model.ok()) << model.status();
  p.model = std::move(*model);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  p.emb.resize(kB * kF * kK);
  p.linear.resize(kB * kF);
  p.mask.assign(kB * kF, 1.0f);
  p.dense.resize(kB * dense_dim);
  for (float& v : p.emb) v = u(rng);
  for (float& v : p.linear) v = u(rng);
  for (float& v : p.dense) v = u(rng);
  p.mask[1] = 0.0f;       // row 0 misses field 1
  p.mask[kF + 4] = 0.0f;  // row 1 misses field 4
  p.labels = {1.0f, 0.0f, 0.0f, 1.0f};
  for (const auto& spec : p.model->dense_params()) {
    p.params.emplace_back(spec.size());
    for (float& v : p.params.back()) v = u(rng);
  }
  return p;
}

Grads MakeGrads(const Problem& p) {
  Grads g;
  g.emb.assign(p.emb.size(), 7.0f);  // garbage: must be overwritten
  g.linear.assign(p.linear.size(), 7.0f);
  for (const auto& spec : p.model->dense_params()) g.dense.emplace_back(spec.size(), 7.0f);
  return g;
}

class CtrModelKindTest : public ::testing::TestWithParam<ModelKind> {};

// Central differences (eps 1e-3) of the float loss, compared in double. Coordinates
// whose one-sided slopes disagree (a ReLU kink inside [x-eps, x+eps]) are skipped.
void CheckGradients(ModelKind kind, int dense_dim) {
  SCOPED_TRACE("dense_dim " + std::to_string(dense_dim));
  Problem p = MakeProblem(kind, 11, dense_dim);
  Grads g = MakeGrads(p);
  auto loss = p.model->ForwardBackward(p.Batch(), p.Params(), g.View());
  ASSERT_TRUE(loss.ok()) << loss.status();

  const double eps = 1e-3;
  int checked = 0, skipped = 0;
  double max_abs = 0.0;
  auto check = [&](float& x, float analytic, const std::string& what) {
    const float saved = x;
    const double f0 = p.Loss();
    x = static_cast<float>(saved + eps);
    const double fp = p.Loss();
    x = static_cast<float>(saved - eps);
    const double fm = p.Loss();
    x = saved;
    if (std::fabs(fp - 2 * f0 + fm) > 2e-5) {
      ++skipped;
      return;
    }
    const double numeric = (fp - fm) / (2 * eps);
    const double tol = 1e-2 * std::max(std::fabs(numeric), std::fabs(double{analytic})) + 2e-4;
    EXPECT_NEAR(analytic, numeric, tol) << what;
    max_abs = std::max(max_abs, std::fabs(double{analytic}));
    ++checked;
  };
  for (size_t i = 0; i < p.linear.size(); ++i) {
    check(p.linear[i], g.linear[i], "linear[" + std::to_string(i) + "]");
  }
  for (size_t i = 0; i < p.emb.size(); ++i) {
    if (kind == ModelKind::kLr) {
      EXPECT_EQ(g.emb[i], 0.0f);
      continue;
    }
    check(p.emb[i], g.emb[i], "emb[" + std::to_string(i) + "]");
  }
  const auto& specs = p.model->dense_params();
  for (size_t t = 0; t < specs.size(); ++t) {
    for (size_t i = 0; i < p.params[t].size(); ++i) {
      check(p.params[t][i], g.dense[t][i], specs[t].name + "[" + std::to_string(i) + "]");
    }
  }
  EXPECT_GT(max_abs, 1e-3);
  EXPECT_LE(skipped * 10, checked) << "too many kink-skipped coordinates";
}

TEST_P(CtrModelKindTest, GradientsMatchFiniteDifferences) {
  CheckGradients(GetParam(), kD);
  CheckGradients(GetParam(), /*dense_dim=*/0);
}

// Missing slots: their emb/linear values do not matter and their gradients are 0.
TEST_P(CtrModelKindTest, MaskedSlotsHaveNoEffectAndNoGradient) {
  Problem p = MakeProblem(GetParam(), 12);
  std::vector<float> logits_a(kB), logits_b(kB);
  ASSERT_TRUE(p.model->Forward(p.Batch(), p.Params(), {logits_a, {}}).ok());
  for (int r = 0; r < kB; ++r) {
    for (int f = 0; f < kF; ++f) {
      if (p.mask[r * kF + f] != 0.0f) continue;
      p.linear[r * kF + f] = 1e3f;
      for (int k = 0; k < kK; ++k) p.emb[(r * kF + f) * kK + k] = -1e3f;
    }
  }
  Grads g = MakeGrads(p);
  ASSERT_TRUE(p.model->ForwardBackward(p.Batch(), p.Params(), g.View(), {logits_b, {}}).ok());
  for (int r = 0; r < kB; ++r) EXPECT_FLOAT_EQ(logits_a[r], logits_b[r]);
  for (int r = 0; r < kB; ++r) {
    for (int f = 0; f < kF; ++f) {
      if (p.mask[r * kF + f] != 0.0f) continue;
      EXPECT_EQ(g.linear[r * kF + f], 0.0f);
      for (int k = 0; k < kK; ++k) EXPECT_EQ(g.emb[(r * kF + f) * kK + k], 0.0f);
    }
  }
}

// A few hundred SGD steps on a separable toy stream (label = which of two ids sits in
// field 0; field 1 is noise) drive the loss down.
TEST_P(CtrModelKindTest, SgdReducesLossOnSeparableProblem) {
  ModelOptions opts;
  opts.kind = GetParam();
  opts.num_fields = 2;
  opts.emb_dim = 4;
  opts.dense_dim = 1;
  opts.hidden = {8, 8};
  auto model_or = CtrModel::Create(opts);
  ASSERT_TRUE(model_or.ok()) << model_or.status();
  CtrModel& model = **model_or;
  std::vector<std::vector<float>> params;
  std::vector<std::span<float>> pv;
  for (const auto& s : model.dense_params()) params.emplace_back(s.size());
  for (auto& v : params) pv.push_back(v);
  ASSERT_TRUE(InitDenseParams(model.dense_params(), 1, pv).ok());
  // "Server" tables: ids 0/1 in field 0, ids 2..5 in field 1.
  std::mt19937 rng(2);
  std::uniform_real_distribution<float> u(-0.1f, 0.1f);
  std::vector<std::vector<float>> table(6, std::vector<float>(opts.emb_dim));
  std::vector<float> w1(6, 0.0f);
  for (auto& row : table) {
    for (float& v : row) v = u(rng);
  }
  const int b = 8;
  std::vector<int> ids(b * 2);
  std::vector<float> labels(b), dense(b), mask(b * 2, 1.0f);
  for (int r = 0; r < b; ++r) {
    ids[r * 2] = r % 2;
    ids[r * 2 + 1] = 2 + (r / 2) % 4;
    labels[r] = static_cast<float>(r % 2);
    dense[r] = 0.5f;
  }
  std::vector<float> emb(b * 2 * opts.emb_dim), linear(b * 2);
  Grads g;
  g.emb.resize(emb.size());
  g.linear.resize(linear.size());
  for (auto& v : params) g.dense.emplace_back(v.size());
  float first = 0.0f, last = 0.0f;
  for (int step = 0; step < 200; ++step) {
    for (int s = 0; s < b * 2; ++s) {
      std::copy(table[ids[s]].begin(), table[ids[s]].end(), emb.begin() + s * opts.emb_dim);
      linear[s] = w1[ids[s]];
    }
    std::vector<std::span<const float>> p(params.begin(), params.end());
    auto loss = model.ForwardBackward({b, emb, linear, mask, dense, labels}, p, g.View());
    ASSERT_TRUE(loss.ok()) << loss.status();
    if (step == 0) first = *loss;
    last = *loss;
    const float lr = 0.5f;
    for (int s = 0; s < b * 2; ++s) {  // the server would sum per key; same here
      for (int k = 0; k < opts.emb_dim; ++k) table[ids[s]][k] -= lr * g.emb[s * opts.emb_dim + k];
      w1[ids[s]] -= lr * g.linear[s];
    }
    for (size_t t = 0; t < params.size(); ++t) {
      for (size_t i = 0; i < params[t].size(); ++i) params[t][i] -= lr * g.dense[t][i];
    }
  }
  EXPECT_NEAR(first, std::log(2.0f), 0.1f);
  EXPECT_LT(last, 0.1f * first);
}

INSTANTIATE_TEST_SUITE_P(AllModels, CtrModelKindTest,
                         ::testing::Values(ModelKind::kLr, ModelKind::kFm, ModelKind::kWideDeep,
                                           ModelKind::kDeepFm),
                         [](const auto& info) { return std::string(ModelKindName(info.param)); });

TEST(CtrModelTest, FmInteractionEqualsNaivePairwiseSum) {
  Problem p = MakeProblem(ModelKind::kFm, 13, /*dense_dim=*/0);
  std::fill(p.linear.begin(), p.linear.end(), 0.0f);
  p.params[0][0] = 0.0f;  // bias
  std::vector<float> logits(kB);
  ASSERT_TRUE(p.model->Forward(p.Batch(), p.Params(), {logits, {}}).ok());
  for (int r = 0; r < kB; ++r) {
    double naive = 0.0;
    for (int i = 0; i < kF; ++i) {
      for (int j = i + 1; j < kF; ++j) {
        for (int k = 0; k < kK; ++k) {
          naive += double{p.mask[r * kF + i]} * p.mask[r * kF + j] * p.emb[(r * kF + i) * kK + k] *
                   p.emb[(r * kF + j) * kK + k];
        }
      }
    }
    EXPECT_NEAR(logits[r], naive, 1e-5 + 1e-5 * std::fabs(naive)) << "row " << r;
  }
}

TEST(CtrModelTest, LrWithZeroWeightsPredictsHalf) {
  Problem p = MakeProblem(ModelKind::kLr, 14);
  std::fill(p.linear.begin(), p.linear.end(), 0.0f);
  for (auto& t : p.params) std::fill(t.begin(), t.end(), 0.0f);
  std::vector<float> probs(kB), logits(kB);
  auto loss = p.model->Forward(p.Batch(), p.Params(), {logits, probs});
  ASSERT_TRUE(loss.ok());
  EXPECT_NEAR(*loss, std::log(2.0), 1e-6);
  for (int r = 0; r < kB; ++r) {
    EXPECT_EQ(logits[r], 0.0f);
    EXPECT_EQ(probs[r], 0.5f);
  }
}

TEST(CtrModelTest, LossAndSigmoidStableForLargeLogits) {
  for (float z : {-1e4f, -100.0f, -30.0f, 30.0f, 100.0f, 1e4f}) {
    const float p = Sigmoid(z);
    EXPECT_TRUE(std::isfinite(p));
    EXPECT_GE(p, 0.0f);
    EXPECT_LE(p, 1.0f);
    EXPECT_TRUE(std::isfinite(LogLoss(z, 0.0f)));
    EXPECT_TRUE(std::isfinite(LogLoss(z, 1.0f)));
  }
  EXPECT_NEAR(LogLoss(100.0f, 1.0f), 0.0f, 1e-6);
  EXPECT_NEAR(LogLoss(100.0f, 0.0f), 100.0f, 1e-4);
  EXPECT_NEAR(LogLoss(-100.0f, 1.0f), 100.0f, 1e-4);
  EXPECT_NEAR(LogLoss(-100.0f, 0.0f), 0.0f, 1e-6);
  EXPECT_NEAR(LogLoss(0.0f, 1.0f), std::log(2.0f), 1e-7);

  // Through a model: a huge bias gives a finite loss and finite gradients.
  Problem p = MakeProblem(ModelKind::kDeepFm, 15);
  p.params[0][0] = 1e4f;
  Grads g = MakeGrads(p);
  auto loss = p.model->ForwardBackward(p.Batch(), p.Params(), g.View());
  ASSERT_TRUE(loss.ok());
  EXPECT_TRUE(std::isfinite(*loss));
  EXPECT_GT(*loss, 1e3f);  // two of four labels are 0
  for (float v : g.emb) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NEAR(g.dense[0][0], 0.5f, 1e-6);  // mean of (1 - y)
}

TEST(CtrModelTest, PrimitivesReusedForSameBatchSizeAndRebuiltForNew) {
  Problem p = MakeProblem(ModelKind::kDeepFm, 16);
  EXPECT_EQ(p.model->primitive_builds(), 0);
  Grads g = MakeGrads(p);
  auto first = p.model->ForwardBackward(p.Batch(), p.Params(), g.View());
  ASSERT_TRUE(first.ok());
  auto second = p.model->ForwardBackward(p.Batch(), p.Params(), g.View());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(*first, *second);
  EXPECT_EQ(p.model->primitive_builds(), 1);

  // Batch of 2 (the first two rows): a rebuild, and the same per-row logits.
  std::vector<float> full(kB), half(2);
  ASSERT_TRUE(p.model->Forward(p.Batch(), p.Params(), {full, {}}).ok());
  EXPECT_EQ(p.model->primitive_builds(), 1);
  ModelBatch small{2,
                   std::span<const float>(p.emb).first(2 * kF * kK),
                   std::span<const float>(p.linear).first(2 * kF),
                   std::span<const float>(p.mask).first(2 * kF),
                   std::span<const float>(p.dense).first(2 * kD),
                   std::span<const float>(p.labels).first(2)};
  ASSERT_TRUE(p.model->Forward(small, p.Params(), {half, {}}).ok());
  EXPECT_EQ(p.model->primitive_builds(), 2);
  EXPECT_NEAR(half[0], full[0], 1e-5);
  EXPECT_NEAR(half[1], full[1], 1e-5);
  ASSERT_TRUE(p.model->Forward(small, p.Params(), {half, {}}).ok());
  EXPECT_EQ(p.model->primitive_builds(), 2);
}

TEST(CtrModelTest, RejectsMismatchedSizes) {
  Problem p = MakeProblem(ModelKind::kDeepFm, 17);
  ModelBatch bad = p.Batch();
  bad.emb = bad.emb.first(bad.emb.size() - 1);
  EXPECT_EQ(p.model->Forward(bad, p.Params()).status().code(), StatusCode::kInvalidArgument);
  auto params = p.Params();
  params.pop_back();
  EXPECT_EQ(p.model->Forward(p.Batch(), params).status().code(), StatusCode::kInvalidArgument);
  Grads g = MakeGrads(p);
  g.dense.pop_back();
  EXPECT_EQ(p.model->ForwardBackward(p.Batch(), p.Params(), g.View()).status().code(),
            StatusCode::kInvalidArgument);
  ModelBatch unlabeled = p.Batch();
  unlabeled.labels = {};
  Grads g2 = MakeGrads(p);
  EXPECT_EQ(p.model->ForwardBackward(unlabeled, p.Params(), g2.View()).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_TRUE(p.model->Forward(unlabeled, p.Params()).ok());

  ModelOptions opts;
  opts.kind = ModelKind::kDeepFm;
  opts.num_fields = 0;
  EXPECT_EQ(CtrModel::Create(opts).status().code(), StatusCode::kInvalidArgument);
  opts.num_fields = 3;
  opts.hidden = {};
  EXPECT_EQ(CtrModel::Create(opts).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseModelKind("deepfm").value(), ModelKind::kDeepFm);
  EXPECT_EQ(ParseModelKind("xgboost").status().code(), StatusCode::kInvalidArgument);
}

TEST(CtrModelTest, DenseParamsListedAndInitDeterministic) {
  ModelOptions opts;
  opts.kind = ModelKind::kDeepFm;
  opts.num_fields = 39;
  opts.emb_dim = 16;
  opts.dense_dim = 13;
  opts.hidden = {400, 400, 400};
  auto model = CtrModel::Create(opts);
  ASSERT_TRUE(model.ok());
  const auto& specs = (*model)->dense_params();
  ASSERT_EQ(specs.size(), 9u);
  EXPECT_EQ(specs[0].name, "bias");
  EXPECT_EQ(specs[1].name, "dense.weight");
  EXPECT_EQ(specs[2].name, "mlp.0.weight");
  EXPECT_EQ(specs[2].shape, (std::vector<int64_t>{400, 39 * 16 + 13}));
  EXPECT_EQ(specs[8].name, "mlp.out.weight");

  auto init = [&](uint64_t seed) {
    std::vector<std::vector<float>> v;
    std::vector<std::span<float>> spans;
    for (const auto& s : specs) v.emplace_back(s.size());
    for (auto& t : v) spans.push_back(t);
    EXPECT_TRUE(InitDenseParams(specs, seed, spans).ok());
    return v;
  };
  const auto a = init(42), b = init(42), c = init(43);
  EXPECT_EQ(a, b);
  EXPECT_NE(a[2], c[2]);
  EXPECT_EQ(a[0][0], 0.0f);
  const float bound = std::sqrt(6.0f / (39 * 16 + 13));
  float max_abs = 0.0f;
  double mean = 0.0;
  for (float v : a[2]) {
    max_abs = std::max(max_abs, std::fabs(v));
    mean += v;
  }
  EXPECT_LE(max_abs, bound);
  EXPECT_GT(max_abs, 0.9f * bound);
  EXPECT_NEAR(mean / a[2].size(), 0.0, 0.01 * bound);
  for (float v : a[3]) EXPECT_EQ(v, 0.0f);  // mlp.0.bias

  std::vector<float> wrong(3);
  std::vector<std::span<float>> one{wrong};
  EXPECT_EQ(InitDenseParams(specs, 1, one).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace eddy::models
