// The worker client against a real in-process cluster (scheduler, servers and
// clients as threads over loopback TCP).
#include "worker/client.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>

#include "common/partition.h"
#include "tests/testing/local_cluster.h"

namespace eddy::worker {
namespace {

using testing::LocalCluster;
using testing::LocalClusterOptions;

std::unique_ptr<LocalCluster> StartCluster(LocalClusterOptions o) {
  auto c = LocalCluster::Start(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(c).value() : nullptr;
}

class ClientTest : public ::testing::TestWithParam<std::pair<int, int>> {};

TEST_P(ClientTest, PullReassemblesValuesInKeyOrderAcrossServers) {
  LocalClusterOptions o;
  o.num_servers = GetParam().first;
  o.num_workers = GetParam().second;
  o.tables = "emb:dim=3,opt=sgd,lr=1";
  auto cluster = StartCluster(o);
  ASSERT_TRUE(cluster);
  Client& client = cluster->client(0);
  // Key k gets the gradient -(k % 1000 + 1, 2*(...), 3*(...)): afterwards row k holds +those.
  std::vector<uint64_t> keys;
  for (uint64_t i = 0; i < 5000; ++i) keys.push_back(i * 2654435761ULL);
  std::vector<float> grads;
  for (uint64_t k : keys) {
    float v = static_cast<float>(k % 1000 + 1);
    grads.insert(grads.end(), {-v, -2 * v, -3 * v});
  }
  ASSERT_TRUE(client.Push("emb", keys, grads)->Wait().ok());
  std::vector<uint64_t> shuffled = keys;
  std::shuffle(shuffled.begin(), shuffled.end(), std::mt19937(7));
  auto pull = client.Pull("emb", shuffled);
  ASSERT_TRUE(pull->Wait().ok());
  auto values = pull->values();
  ASSERT_EQ(values.size(), shuffled.size() * 3);
  for (size_t i = 0; i < shuffled.size(); ++i) {
    float v = static_cast<float>(shuffled[i] % 1000 + 1);
    ASSERT_EQ(values[i * 3], v) << i;
    ASSERT_EQ(values[i * 3 + 1], 2 * v);
    ASSERT_EQ(values[i * 3 + 2], 3 * v);
  }
  // Every other worker sees the same values.
  for (int w = 1; w < cluster->num_workers(); ++w) {
    auto p = cluster->client(w).Pull("emb", shuffled);
    ASSERT_TRUE(p->Wait().ok());
    EXPECT_TRUE(std::equal(values.begin(), values.end(), p->values().begin()));
  }
  EXPECT_TRUE(cluster->Shutdown().ok());
}

TEST_P(ClientTest, DenseTensorIsSplitAndReassembled) {
  LocalClusterOptions o;
  o.num_servers = GetParam().first;
  o.num_workers = GetParam().second;
  o.tables = "emb:dim=2;w:shape=7x13,opt=sgd,lr=0.5";
  auto cluster = StartCluster(o);
  ASSERT_TRUE(cluster);
  Client& client = cluster->client(0);
  std::vector<float> g(91);
  for (int i = 0; i < 91; ++i) g[i] = -2.0f * i;
  ASSERT_TRUE(client.PushDense("w", Buffer::CopyOf(std::span<const float>(g)))->Wait().ok());
  auto pull = client.PullDense("w");
  ASSERT_TRUE(pull->Wait().ok());
  ASSERT_EQ(pull->values().size(), 91u);
  for (int i = 0; i < 91; ++i) EXPECT_EQ(pull->values()[i], static_cast<float>(i)) << i;
  EXPECT_TRUE(cluster->Shutdown().ok());
}

TEST_P(ClientTest, ManyConcurrentOperationsFromManyThreads) {
  LocalClusterOptions o;
  o.num_servers = GetParam().first;
  o.num_workers = GetParam().second;
  o.tables = "emb:dim=1,opt=sgd,lr=1";
  auto cluster = StartCluster(o);
  ASSERT_TRUE(cluster);
  constexpr int kThreads = 4, kOpsPerThread = 200, kInFlight = 16;
  std::vector<uint64_t> keys(257);
  for (size_t i = 0; i < keys.size(); ++i) keys[i] = MixKey(i);
  const std::vector<float> minus_one(keys.size(), -1.0f);
  std::atomic<int> callbacks{0};
  {
    std::vector<std::jthread> threads;
    for (int w = 0; w < cluster->num_workers(); ++w) {
      for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, w] {
          std::vector<OpPtr> window;
          for (int i = 0; i < kOpsPerThread; ++i) {
            window.push_back(cluster->client(w).Push("emb", keys, minus_one, [&](const Status& s) {
              if (s.ok()) callbacks.fetch_add(1);
            }));
            if (window.size() == kInFlight) {
              for (auto& op : window) ASSERT_TRUE(op->Wait().ok());
              window.clear();
            }
          }
          for (auto& op : window) ASSERT_TRUE(op->Wait().ok());
        });
      }
    }
  }
  const int total = cluster->num_workers() * kThreads * kOpsPerThread;
  EXPECT_EQ(callbacks.load(), total);
  auto pull = cluster->client(0).Pull("emb", keys);
  ASSERT_TRUE(pull->Wait().ok());
  for (float v : pull->values()) EXPECT_EQ(v, static_cast<float>(total));
  EXPECT_TRUE(cluster->Shutdown().ok());
}

INSTANTIATE_TEST_SUITE_P(ServersByWorkers, ClientTest,
                         ::testing::Values(std::pair{1, 1}, std::pair{2, 2}, std::pair{3, 1}),
                         [](const auto& info) {
                           return std::to_string(info.param.first) + "servers" +
                                  std::to_string(info.param.second) + "workers";
                         });

TEST(ClientErrorsTest, BadCallsReturnAStatusAndNeverCrash) {
  LocalClusterOptions o;
  o.num_servers = 2;
  o.num_workers = 1;
  o.tables = "emb:dim=4;w:shape=10";
  auto cluster = StartCluster(o);
  ASSERT_TRUE(cluster);
  Client& c = cluster->client(0);
  std::vector<uint64_t> keys = {1, 2, 3};
  EXPECT_EQ(c.Pull("nope", keys)->Wait().code(), StatusCode::kNotFound);
  EXPECT_EQ(c.Pull("w", keys)->Wait().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.Push("emb", keys, std::vector<float>(5))->Wait().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(c.PushDense("w", Buffer::Allocate(4 * 9))->Wait().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(c.PullDense("emb")->Wait().code(), StatusCode::kNotFound);
  EXPECT_EQ(c.Pull("emb", Buffer::Allocate(7))->Wait().code(), StatusCode::kInvalidArgument);
  // An empty request completes at once, without a round trip.
  auto empty = c.Pull("emb", std::span<const uint64_t>());
  EXPECT_TRUE(empty->Wait().ok());
  EXPECT_TRUE(empty->values().empty());
  // Callbacks get errors too.
  Status seen;
  c.Pull("nope", keys, [&](const Status& s) { seen = s; })->Wait().IgnoreError();
  EXPECT_EQ(seen.code(), StatusCode::kNotFound);
  EXPECT_TRUE(cluster->Shutdown().ok());
}

TEST(ClientErrorsTest, PushPullReturnsUpdatedValues) {
  LocalClusterOptions o;
  o.num_servers = 2;
  o.num_workers = 1;
  o.tables = "emb:dim=2,opt=sgd,lr=0.5";
  auto cluster = StartCluster(o);
  ASSERT_TRUE(cluster);
  std::vector<uint64_t> keys = {10, 20, 30, 40};
  std::vector<float> g = {-2, -4, -2, -4, -2, -4, -2, -4};
  auto op = cluster->client(0).PushPull("emb", Buffer::CopyOf(std::span<const uint64_t>(keys)),
                                        Buffer::CopyOf(std::span<const float>(g)));
  ASSERT_TRUE(op->Wait().ok());
  ASSERT_EQ(op->values().size(), 8u);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(op->values()[2 * i], 1.0f);
    EXPECT_EQ(op->values()[2 * i + 1], 2.0f);
  }
  EXPECT_TRUE(cluster->Shutdown().ok());
}

TEST(ClientErrorsTest, BarrierReleasesAllWorkersTogether) {
  LocalClusterOptions o;
  o.num_servers = 1;
  o.num_workers = 3;
  auto cluster = StartCluster(o);
  ASSERT_TRUE(cluster);
  std::atomic<int> arrived{0};
  std::atomic<int> min_seen_after{100};
  {
    std::vector<std::jthread> threads;
    for (int w = 0; w < 3; ++w) {
      threads.emplace_back([&, w] {
        arrived.fetch_add(1);
        ASSERT_TRUE(cluster->client(w).Barrier("b").ok());
        int a = arrived.load();
        int cur = min_seen_after.load();
        while (a < cur && !min_seen_after.compare_exchange_weak(cur, a)) {
        }
      });
    }
  }
  EXPECT_EQ(min_seen_after.load(), 3);  // nobody left the barrier before all arrived
  EXPECT_TRUE(cluster->Shutdown().ok());
}

}  // namespace
}  // namespace eddy::worker
