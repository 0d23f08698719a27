#include "models/mlp.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

namespace eddy::models {
namespace {

struct Net {
  std::vector<std::vector<float>> w, b;
  std::vector<std::span<const float>> wv() const { return {w.begin(), w.end()}; }
  std::vector<std::span<const float>> bv() const { return {b.begin(), b.end()}; }
};

Net RandomNet(int in, const std::vector<int>& hidden, std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-0.5f, 0.5f);
  Net n;
  for (int h : hidden) {
    n.w.emplace_back(static_cast<size_t>(h) * in);
    n.b.emplace_back(h);
    for (float& v : n.w.back()) v = u(rng);
    for (float& v : n.b.back()) v = u(rng);
    in = h;
  }
  return n;
}

// Reference forward in double; returns all activations (acts[0] = x).
std::vector<std::vector<double>> RefForward(int batch, int in, const std::vector<int>& hidden,
                                            const std::vector<float>& x, const Net& n) {
  std::vector<std::vector<double>> acts{std::vector<double>(x.begin(), x.end())};
  for (size_t l = 0; l < hidden.size(); ++l) {
    const int out = hidden[l];
    std::vector<double> y(static_cast<size_t>(batch) * out);
    for (int r = 0; r < batch; ++r) {
      for (int o = 0; o < out; ++o) {
        double z = n.b[l][o];
        for (int i = 0; i < in; ++i) z += n.w[l][o * in + i] * acts.back()[r * in + i];
        y[r * out + o] = std::max(z, 0.0);
      }
    }
    acts.push_back(std::move(y));
    in = out;
  }
  return acts;
}

TEST(MlpTest, RejectsBadShapes) {
  EXPECT_EQ(Mlp::Create(0, {4}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Mlp::Create(3, {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Mlp::Create(3, {4, 0}).status().code(), StatusCode::kInvalidArgument);
  auto mlp = Mlp::Create(3, {4});
  ASSERT_TRUE(mlp.ok());
  std::vector<float> x(5), w(12), b(4);
  std::vector<std::span<const float>> wv{w}, bv{b};
  EXPECT_EQ((*mlp)->Forward(2, x, wv, bv).status().code(), StatusCode::kInvalidArgument);
  std::vector<float> d(8), dx(6), dw(12), db(4);
  std::vector<std::span<float>> dwv{dw}, dbv{db};
  EXPECT_EQ((*mlp)->Backward(d, dx, dwv, dbv).code(), StatusCode::kFailedPrecondition);
}

TEST(MlpTest, ForwardAndBackwardMatchReference) {
  const int batch = 7, in = 9;
  const std::vector<int> hidden = {8, 6, 5};
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Net n = RandomNet(in, hidden, rng);
  std::vector<float> x(batch * in);
  for (float& v : x) v = u(rng);
  auto mlp_or = Mlp::Create(in, hidden);
  ASSERT_TRUE(mlp_or.ok()) << mlp_or.status();
  Mlp& mlp = **mlp_or;
  auto y = mlp.Forward(batch, x, n.wv(), n.bv());
  ASSERT_TRUE(y.ok()) << y.status();
  const auto acts = RefForward(batch, in, hidden, x, n);
  ASSERT_EQ(y->size(), acts.back().size());
  for (size_t i = 0; i < y->size(); ++i) EXPECT_NEAR((*y)[i], acts.back()[i], 1e-4);

  // Backward of L = sum(d_out * y) against a double reference.
  std::vector<float> d_out(y->size());
  for (float& v : d_out) v = u(rng);
  std::vector<std::vector<float>> dw, db;
  for (size_t l = 0; l < hidden.size(); ++l) {
    dw.emplace_back(n.w[l].size(), 99.0f);
    db.emplace_back(n.b[l].size(), 99.0f);
  }
  std::vector<float> dx(x.size(), 99.0f);
  std::vector<std::span<float>> dwv(dw.begin(), dw.end()), dbv(db.begin(), db.end());
  ASSERT_TRUE(mlp.Backward(d_out, dx, dwv, dbv).ok());

  std::vector<double> g(d_out.begin(), d_out.end());
  for (size_t l = hidden.size(); l-- > 0;) {
    const int out = hidden[l], lin = l == 0 ? in : hidden[l - 1];
    for (size_t i = 0; i < g.size(); ++i) {
      if (acts[l + 1][i] <= 0.0) g[i] = 0.0;
    }
    std::vector<double> gin(static_cast<size_t>(batch) * lin, 0.0);
    for (int o = 0; o < out; ++o) {
      double sb = 0.0;
      for (int r = 0; r < batch; ++r) sb += g[r * out + o];
      EXPECT_NEAR(db[l][o], sb, 1e-4) << "layer " << l;
      for (int i = 0; i < lin; ++i) {
        double sw = 0.0;
        for (int r = 0; r < batch; ++r) {
          sw += g[r * out + o] * acts[l][r * lin + i];
          gin[r * lin + i] += g[r * out + o] * n.w[l][o * lin + i];
        }
        EXPECT_NEAR(dw[l][o * lin + i], sw, 1e-4) << "layer " << l;
      }
    }
    g = std::move(gin);
  }
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_NEAR(dx[i], g[i], 1e-4);
}

TEST(MlpTest, BackwardWithoutInputGradientAndBatchOfOne) {
  const int in = 3;
  const std::vector<int> hidden = {4, 2};
  std::mt19937 rng(7);
  Net n = RandomNet(in, hidden, rng);
  auto mlp_or = Mlp::Create(in, hidden);
  ASSERT_TRUE(mlp_or.ok());
  Mlp& mlp = **mlp_or;
  std::vector<float> x = {0.3f, -0.2f, 0.9f};
  auto y = mlp.Forward(1, x, n.wv(), n.bv());
  ASSERT_TRUE(y.ok()) << y.status();
  const auto acts = RefForward(1, in, hidden, x, n);
  for (size_t i = 0; i < y->size(); ++i) EXPECT_NEAR((*y)[i], acts.back()[i], 1e-5);
  std::vector<float> d_out = {1.0f, -1.0f};
  std::vector<std::vector<float>> dw, db;
  for (size_t l = 0; l < hidden.size(); ++l) {
    dw.emplace_back(n.w[l].size());
    db.emplace_back(n.b[l].size());
  }
  std::vector<std::span<float>> dwv(dw.begin(), dw.end()), dbv(db.begin(), db.end());
  std::vector<float> dx(in);
  ASSERT_TRUE(mlp.Backward(d_out, dx, dwv, dbv).ok());
  const auto with_dx = dw;
  ASSERT_TRUE(mlp.Backward(d_out, {}, dwv, dbv).ok());
  EXPECT_EQ(dw, with_dx);
}

TEST(MlpTest, PrimitivesBuiltOncePerBatchSize) {
  const int in = 4;
  const std::vector<int> hidden = {3};
  std::mt19937 rng(5);
  Net n = RandomNet(in, hidden, rng);
  auto mlp_or = Mlp::Create(in, hidden);
  ASSERT_TRUE(mlp_or.ok());
  Mlp& mlp = **mlp_or;
  EXPECT_EQ(mlp.primitive_builds(), 0);
  for (int batch : {2, 2, 2, 5, 5, 2}) {
    std::vector<float> x(batch * in, 0.25f);
    ASSERT_TRUE(mlp.Forward(batch, x, n.wv(), n.bv()).ok());
  }
  EXPECT_EQ(mlp.primitive_builds(), 3);
}

}  // namespace
}  // namespace eddy::models
