#include "server/dense_tensor.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>
#include <vector>

#include "common/partition.h"
#include "common/table_config.h"
#include "server/initializer.h"
#include "tests/testing/table_spec.h"

namespace eddy::server {
namespace {

using testing::TableSpec;

std::unique_ptr<DenseTensor> Make(const proto::TableConfig& config, uint64_t begin, uint64_t end) {
  auto t = DenseTensor::Create(config, begin, end);
  EXPECT_TRUE(t.ok()) << t.status();
  return std::move(t).value();
}

std::vector<float> Gradients(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> g(n);
  for (float& x : g) x = normal(rng);
  return g;
}

TEST(DenseTensorTest, CreateChecksConfigAndSlice) {
  const proto::TableConfig config = TableSpec("w:shape=10x3");
  EXPECT_EQ(DenseTensor::Create(TableSpec("e:dim=4"), 0, 1).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(DenseTensor::Create(config, 5, 4).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DenseTensor::Create(config, 0, 31).status().code(), StatusCode::kInvalidArgument);
  proto::TableConfig l1 = TableSpec("w:shape=10,opt=sgd");
  l1.mutable_optimizer()->set_l1(1.0f);
  EXPECT_EQ(DenseTensor::Create(l1, 0, 10).status().code(), StatusCode::kInvalidArgument);
  auto t = Make(config, 7, 30);
  EXPECT_EQ(t->begin(), 7u);
  EXPECT_EQ(t->size(), 23u);
  EXPECT_EQ(t->config().name(), "w");
  // An empty slice (more servers than elements) is valid.
  auto empty = Make(config, 30, 30);
  EXPECT_EQ(empty->size(), 0u);
  empty->Push(nullptr, nullptr);
  empty->Pull(nullptr, nullptr);
}

// Slices cut as servers would cut them start from the whole tensor's initial
// values, however many servers there are.
TEST(DenseTensorTest, SlicesStartFromTheInitializerOfTheWholeTensor) {
  const proto::TableConfig config = TableSpec("w:shape=100x101,init=normal,init_scale=0.5,seed=3");
  const uint64_t count = DenseElementCount(config);
  std::vector<float> whole(count);
  Initializer(config.initializer()).FillDense(0, whole.data(), count);
  ThreadPool pool(2);
  for (uint32_t servers : {1u, 3u, 7u}) {
    std::vector<float> joined;
    for (uint32_t s = 0; s < servers; ++s) {
      auto t =
          Make(config, DenseSliceBegin(count, s, servers), DenseSliceBegin(count, s + 1, servers));
      std::vector<float> out(t->size());
      t->Pull(out.data(), &pool);
      joined.insert(joined.end(), out.begin(), out.end());
    }
    EXPECT_EQ(joined, whole) << servers << " servers";
  }
}

// Pushes match the Optimizer applied block by block (each block of kBlockSize
// elements has its own state, as one row), with and without a pool.
class DenseOptimizerTest : public ::testing::TestWithParam<const char*> {};

TEST_P(DenseOptimizerTest, PushMatchesTheOptimizerBlockwise) {
  const std::string kind = GetParam();
  std::string spec = "w:shape=3x50000,opt=" + kind + ",lr=0.05,init=uniform,init_scale=0.1";
  if (kind == "ftrl") spec += ",l1=0.01";
  const proto::TableConfig config = TableSpec(spec);
  const uint64_t begin = 1001, end = 140002;  // not aligned to blocks; large enough for the pool
  const size_t n = end - begin, block = DenseTensor::kBlockSize;
  auto opt = std::move(Optimizer::Create(config.optimizer())).value();
  std::vector<float> w(n), state;
  Initializer(config.initializer()).FillDense(begin, w.data(), n);
  std::vector<size_t> state_at;
  for (size_t first = 0; first < n; first += block) {
    const size_t len = std::min(block, n - first);
    state_at.push_back(state.size());
    state.resize(state.size() + opt->StateSize(len));
    opt->InitState(w.data() + first, state.data() + state_at.back(), len);
  }
  ThreadPool pool(2);
  auto parallel = Make(config, begin, end), serial = Make(config, begin, end);
  std::vector<float> out_parallel(n), out_serial(n);
  for (int step = 0; step < 5; ++step) {
    const std::vector<float> g = Gradients(n, step);
    for (size_t b = 0, first = 0; first < n; ++b, first += block) {
      opt->Apply(w.data() + first, state.data() + state_at[b], g.data() + first,
                 std::min(block, n - first));
    }
    parallel->Push(g.data(), &pool);
    serial->Push(g.data(), nullptr);
    parallel->Pull(out_parallel.data(), &pool);
    serial->Pull(out_serial.data(), nullptr);
    ASSERT_EQ(out_parallel, w) << kind << " step " << step;
    ASSERT_EQ(out_serial, w) << kind << " step " << step;
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, DenseOptimizerTest,
                         ::testing::Values("sgd", "adagrad", "adam", "ftrl"));

TEST(DenseTensorTest, PushPullEqualsPushThenPull) {
  const proto::TableConfig config =
      TableSpec("w:shape=100000,opt=adam,lr=0.01,init=normal,init_scale=0.1");
  ThreadPool pool(2);
  auto a = Make(config, 0, 100000), b = Make(config, 0, 100000);
  std::vector<float> out_a(100000), out_b(100000);
  for (int step = 0; step < 3; ++step) {
    const std::vector<float> g = Gradients(100000, step + 10);
    a->PushPull(g.data(), out_a.data(), &pool);
    b->Push(g.data(), &pool);
    b->Pull(out_b.data(), &pool);
    ASSERT_EQ(out_a, out_b);
  }
}

// Concurrent pushes (SGD, lr 1, gradients -1) are each applied exactly once;
// concurrent pulls see each block either before or after an update.
TEST(DenseTensorTest, ConcurrentPushesAreAllApplied) {
  const proto::TableConfig config = TableSpec("w:shape=70000,opt=sgd,lr=1,init=zeros");
  auto t = Make(config, 0, 70000);
  ThreadPool pool(2);
  constexpr int kThreads = 4, kRounds = 25;
  const std::vector<float> grads(70000, -1.0f);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      for (int r = 0; r < kRounds; ++r) t->Push(grads.data(), i % 2 ? &pool : nullptr);
    });
  }
  std::thread reader([&] {
    std::vector<float> out(70000);
    for (int r = 0; r < 10; ++r) {
      t->Pull(out.data(), nullptr);
      for (size_t b = 0; b < out.size(); b += DenseTensor::kBlockSize) {
        const size_t end = std::min(out.size(), b + DenseTensor::kBlockSize);
        for (size_t i = b; i < end; ++i) ASSERT_EQ(out[i], out[b]) << "torn block";
      }
    }
  });
  for (auto& th : threads) th.join();
  reader.join();
  std::vector<float> out(70000);
  t->Pull(out.data(), &pool);
  for (float v : out) ASSERT_EQ(v, float{kThreads * kRounds});
  EXPECT_EQ(t->MemoryBytes(), 70000 * sizeof(float));
}

}  // namespace
}  // namespace eddy::server
