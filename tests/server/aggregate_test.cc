// Per-clock aggregation (--aggregate=sum|mean with --staleness=0): W workers each
// pushing their gradients for a clock give the same parameters as one push of
// the summed (or averaged) gradients, even with stateful optimizers.
#include <gtest/gtest.h>

#include <cmath>
#include <thread>

#include "common/partition.h"
#include "common/table_config.h"
#include "server/clock_aggregator.h"
#include "server/dense_tensor.h"
#include "server/embedding_table.h"
#include "tests/testing/local_cluster.h"

namespace eddy::server {
namespace {

constexpr char kTables[] =
    "emb:dim=4,opt=adagrad,lr=0.1,init=normal,init_scale=0.1;w:shape=6,opt=adam,lr=0.01";

std::vector<float> Grad(int worker, int clock, size_t n) {
  std::vector<float> g(n);
  for (size_t i = 0; i < n; ++i) g[i] = std::sin(1.0f + worker * 7.0f + clock * 3.0f + i * 0.37f);
  return g;
}

// Runs `clocks` clocks on a real 2-server cluster of `workers` workers: each pushes
// its gradients, announces the clock, then pulls. Returns the final values.
void RunCluster(int workers, const std::string& aggregate, int clocks,
                const std::vector<uint64_t>& keys, std::vector<float>* sparse,
                std::vector<float>* dense) {
  testing::LocalClusterOptions o;
  o.num_servers = 2;
  o.num_workers = workers;
  o.tables = kTables;
  o.staleness = 0;
  o.aggregate = aggregate;
  auto cluster = testing::LocalCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  {
    std::vector<std::jthread> threads;
    for (int w = 0; w < workers; ++w) {
      threads.emplace_back([&, w] {
        worker::Client& c = (*cluster)->client(w);
        for (int k = 0; k < clocks; ++k) {
          ASSERT_TRUE(c.Push("emb", keys, Grad(w, k, keys.size() * 4))->Wait().ok());
          std::vector<float> dg = Grad(w + 100, k, 6);
          ASSERT_TRUE(c.PushDense("w", Buffer::CopyOf(std::span<const float>(dg)))->Wait().ok());
          ASSERT_TRUE(c.Clock()->Wait().ok());
          ASSERT_TRUE(c.Pull("emb", keys)->Wait().ok());  // waits for the clock's sum
        }
      });
    }
  }
  auto p = (*cluster)->client(0).Pull("emb", keys);
  ASSERT_TRUE(p->Wait().ok());
  sparse->assign(p->values().begin(), p->values().end());
  auto d = (*cluster)->client(0).PullDense("w");
  ASSERT_TRUE(d->Wait().ok());
  dense->assign(d->values().begin(), d->values().end());
  EXPECT_TRUE((*cluster)->Shutdown().ok());
}

// The reference: one table and one tensor, one push per clock of the combined gradient.
void RunReference(int workers, bool mean, int clocks, const std::vector<uint64_t>& keys,
                  std::vector<float>* sparse, std::vector<float>* dense) {
  auto specs = ParseTableSpecs(kTables);
  ASSERT_TRUE(specs.ok());
  auto table = EmbeddingTable::Create((*specs)[0], 4);
  auto tensor = DenseTensor::Create((*specs)[1], 0, 6);
  ASSERT_TRUE(table.ok() && tensor.ok());
  for (int k = 0; k < clocks; ++k) {
    std::vector<float> g(keys.size() * 4, 0.0f), dg(6, 0.0f);
    for (int w = 0; w < workers; ++w) {
      std::vector<float> gw = Grad(w, k, g.size()), dw = Grad(w + 100, k, 6);
      for (size_t i = 0; i < g.size(); ++i) g[i] += gw[i];
      for (size_t i = 0; i < 6; ++i) dg[i] += dw[i];
    }
    if (mean) {
      for (float& v : g) v /= workers;
      for (float& v : dg) v /= workers;
    }
    (*table)->Push(keys, g.data(), nullptr);
    (*tensor)->Push(dg.data(), nullptr);
  }
  sparse->resize(keys.size() * 4);
  (*table)->Pull(keys, sparse->data(), nullptr);
  dense->resize(6);
  (*tensor)->Pull(dense->data(), nullptr);
}

void ExpectNear(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5f) << i;
}

class AggregateTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AggregateTest, WorkersTogetherEqualOneWorkerWithTheCombinedGradient) {
  std::vector<uint64_t> keys;
  for (uint64_t i = 0; i < 40; ++i) keys.push_back(MixKey(i));
  std::vector<float> sparse, dense, ref_sparse, ref_dense;
  RunCluster(3, GetParam(), 4, keys, &sparse, &dense);
  RunReference(3, GetParam() == "mean", 4, keys, &ref_sparse, &ref_dense);
  ExpectNear(sparse, ref_sparse);
  ExpectNear(dense, ref_dense);
}

INSTANTIATE_TEST_SUITE_P(SumAndMean, AggregateTest, ::testing::Values("sum", "mean"));

TEST(AggregateTest, AppliedAtOnceAdaGradDiffersFromTheSum) {
  // Without aggregation the pushes of a clock are applied one by one: with AdaGrad
  // that is not the same as one combined step (which is why aggregation exists).
  std::vector<uint64_t> keys;
  for (uint64_t i = 0; i < 40; ++i) keys.push_back(MixKey(i));
  std::vector<float> sparse, dense, ref_sparse, ref_dense;
  RunCluster(3, "none", 2, keys, &sparse, &dense);
  RunReference(3, false, 2, keys, &ref_sparse, &ref_dense);
  float max_diff = 0;
  for (size_t i = 0; i < sparse.size(); ++i)
    max_diff = std::max(max_diff, std::abs(sparse[i] - ref_sparse[i]));
  EXPECT_GT(max_diff, 1e-3f);
}

TEST(ClockAggregatorTest, SumsPerKeyAndKeepsClocksApart) {
  ClockAggregator agg;
  auto push = [](int64_t clock, std::vector<uint64_t> keys, std::vector<float> g) {
    Message m{MakeHeader(proto::PUSH), Buffer::FromVector(std::move(keys)),
              Buffer::FromVector(std::move(g))};
    m.header.set_table("t");
    m.header.set_clock(clock);
    m.header.set_value_dim(1);
    m.header.set_num_keys(m.keys.size() / 8);
    return m;
  };
  agg.Add(push(0, {1, 2}, {1, 2}));
  agg.Add(push(0, {2, 3}, {10, 20}));
  agg.Add(push(1, {1}, {100}));
  EXPECT_EQ(agg.pending_clocks(), 2u);
  auto out = agg.TakeBefore(1, 0.5f);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].header.clock(), 0);
  auto keys = out[0].keys.As<uint64_t>();
  auto vals = out[0].values.As<float>();
  ASSERT_EQ(keys.size(), 3u);
  EXPECT_EQ(keys[0], 1u);
  EXPECT_EQ(vals[0], 0.5f);
  EXPECT_EQ(keys[1], 2u);
  EXPECT_EQ(vals[1], 6.0f);
  EXPECT_EQ(keys[2], 3u);
  EXPECT_EQ(vals[2], 10.0f);
  EXPECT_EQ(agg.pending_clocks(), 1u);
  EXPECT_EQ(agg.TakeBefore(2, 1.0f).size(), 1u);
  EXPECT_EQ(agg.pending_clocks(), 0u);
}

// The mean divides each clock by the workers that pushed in it: a worker that
// finished (no batch for the clock) does not dilute the others' gradients.
TEST(ClockAggregatorTest, MeanIsOverTheWorkersThatPushedInTheClock) {
  ClockAggregator agg;
  auto push = [](int32_t sender, int64_t clock, float g) {
    Message m{MakeHeader(proto::PUSH), Buffer::FromVector(std::vector<uint64_t>{9}),
              Buffer::FromVector(std::vector<float>{g})};
    m.header.set_table("t");
    m.header.set_sender(sender);
    m.header.set_clock(clock);
    m.header.set_value_dim(1);
    m.header.set_num_keys(1);
    return m;
  };
  agg.Add(push(0, 0, 2));
  agg.Add(push(1, 0, 4));
  agg.Add(push(0, 1, 8));  // worker 1 had no batch left for clock 1
  auto out = agg.TakeMeanBefore(2);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].values.As<float>()[0], 3.0f);
  EXPECT_EQ(out[1].values.As<float>()[0], 8.0f);
}

TEST(AggregateTest, PushPullIsRefusedWhenAggregating) {
  testing::LocalClusterOptions o;
  o.num_servers = 1;
  o.num_workers = 1;
  o.tables = "emb:dim=2,opt=sgd,lr=1";
  o.staleness = 0;
  o.aggregate = "sum";
  auto cluster = testing::LocalCluster::Start(o);
  ASSERT_TRUE(cluster.ok());
  std::vector<uint64_t> keys = {1, 2};
  std::vector<float> g = {1, 1, 1, 1};
  auto op = (*cluster)->client(0).PushPull("emb", Buffer::CopyOf(std::span<const uint64_t>(keys)),
                                           Buffer::CopyOf(std::span<const float>(g)));
  EXPECT_EQ(op->Wait().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE((*cluster)->Shutdown().ok());
}

}  // namespace
}  // namespace eddy::server
