// The staleness bound: the gate on its own, and a real cluster whose workers run
// at randomly different speeds (many seeds) never see a pull answered early.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "server/staleness_gate.h"
#include "tests/testing/local_cluster.h"

namespace eddy::server {
namespace {

Message PullAt(int64_t clock) {
  Message m{MakeHeader(proto::PULL, static_cast<uint64_t>(clock)), {}, {}};
  m.header.set_clock(clock);
  return m;
}

TEST(StalenessGateTest, UnboundedNeverHolds) {
  StalenessGate gate(3, -1);
  EXPECT_FALSE(gate.bounded());
  EXPECT_TRUE(gate.Admits(1000000));
}

TEST(StalenessGateTest, HoldsUntilTheSlowestWorkerCatchesUp) {
  StalenessGate gate(2, 1);
  EXPECT_TRUE(gate.Admits(0));
  EXPECT_TRUE(gate.Admits(1));
  EXPECT_FALSE(gate.Admits(2));
  gate.Hold("a", PullAt(2));
  gate.Hold("b", PullAt(3));
  auto r = gate.Advance(0, 5);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());  // worker 1 is still at clock 0
  r = gate.Advance(1, 1);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].routing_id, "a");
  r = gate.Advance(1, 2);
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].routing_id, "b");
  EXPECT_EQ(gate.held(), 0u);
  EXPECT_EQ(gate.min_clock(), 2);
  // Clocks never go back.
  r = gate.Advance(1, 1);
  EXPECT_EQ(gate.min_clock(), 2);
}

TEST(StalenessGateTest, ZeroStalenessIsSynchronousAndReleasesInArrivalOrder) {
  StalenessGate gate(2, 0);
  EXPECT_TRUE(gate.Admits(0));
  EXPECT_FALSE(gate.Admits(1));
  gate.Hold("x", PullAt(1));
  gate.Hold("y", PullAt(1));
  ASSERT_TRUE(gate.Advance(0, 1).ok());
  auto r = gate.Advance(1, 1);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].routing_id, "x");
  EXPECT_EQ((*r)[1].routing_id, "y");
}

TEST(StalenessGateTest, UnknownWorkerIsAnError) {
  StalenessGate gate(2, 0);
  EXPECT_FALSE(gate.Advance(2, 1).ok());
  EXPECT_FALSE(gate.Advance(-1, 1).ok());
}

// Workers run `clocks` iterations of pull -> (random delay) -> push -> clock. When
// a pull made at clock c returns, every worker must have finished c - s clocks.
void RunBoundedCluster(int staleness, uint64_t seed) {
  testing::LocalClusterOptions o;
  o.num_servers = 2;
  o.num_workers = 3;
  o.tables = "emb:dim=1,opt=sgd,lr=1;w:shape=8,opt=sgd,lr=1";
  o.staleness = staleness;
  auto cluster = testing::LocalCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  constexpr int kClocks = 12;
  // finished[w] is raised before worker w announces the clock, so it is never
  // behind what the servers know.
  std::vector<std::atomic<int64_t>> finished(o.num_workers);
  std::atomic<int> violations{0};
  std::atomic<int> errors{0};
  {
    std::vector<std::jthread> workers;
    for (int w = 0; w < o.num_workers; ++w) {
      workers.emplace_back([&, w] {
        worker::Client& client = (*cluster)->client(w);
        std::mt19937_64 rng(seed * 31 + w);
        std::vector<uint64_t> keys = {1, 2, 3, 4, 5, 6, 7, 8};
        std::vector<float> grads(keys.size(), -1.0f);
        std::mutex mu;
        std::condition_variable cv;
        for (int c = 0; c < kClocks; ++c) {
          auto pull = (c % 2 == 0) ? client.Pull("emb", keys) : client.PullDense("w");
          if (!pull->Wait().ok()) {
            errors.fetch_add(1);
            return;
          }
          int64_t slowest = finished[0].load();
          for (auto& f : finished) slowest = std::min(slowest, f.load());
          if (staleness >= 0 && slowest < c - staleness) violations.fetch_add(1);
          // A random delay makes workers drift apart (waiting on a timeout, not
          // synchronising on it).
          std::unique_lock lock(mu);
          cv.wait_for(lock, std::chrono::microseconds(rng() % 3000));
          lock.unlock();
          if (!client.Push("emb", keys, grads)->Wait().ok()) errors.fetch_add(1);
          finished[w].store(c + 1);
          if (!client.Clock()->Wait().ok()) errors.fetch_add(1);
        }
      });
    }
  }
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(violations.load(), 0) << "staleness " << staleness << " seed " << seed;
  EXPECT_TRUE((*cluster)->Shutdown().ok());
}

TEST(StalenessBoundTest, NeverViolatedUnderRandomDelays) {
  for (int staleness : {0, 1, 3}) {
    for (uint64_t seed = 1; seed <= 4; ++seed) RunBoundedCluster(staleness, seed);
  }
}

// Without a bound a pull is answered however far behind another worker is: worker
// 1 never clocks, and worker 0's pulls at clocks far past it still come back (a
// held pull would time out here), reading worker 1 as the slowest at clock 0.
TEST(StalenessBoundTest, UnboundedJobsDoNotWait) {
  testing::LocalClusterOptions o;
  o.num_servers = 2;
  o.num_workers = 2;
  o.tables = "emb:dim=1,opt=sgd,lr=1;w:shape=8,opt=sgd,lr=1";
  o.staleness = -1;
  auto cluster = testing::LocalCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  worker::Client& client = (*cluster)->client(0);
  const std::vector<uint64_t> keys = {1, 2, 3};
  const std::vector<float> grads(keys.size(), -1.0f);
  constexpr auto kTimeout = std::chrono::seconds(20);
  for (int c = 0; c < 12; ++c) {
    auto pull = (c % 2 == 0) ? client.Pull("emb", keys) : client.PullDense("w");
    ASSERT_TRUE(pull->Wait(kTimeout).ok()) << "pull at clock " << c << " was held";
    EXPECT_EQ(pull->slowest_clock(), 0) << "worker 1 never clocked";
    ASSERT_TRUE(client.Push("emb", keys, grads)->Wait(kTimeout).ok());
    ASSERT_TRUE(client.Clock()->Wait(kTimeout).ok());
  }
  EXPECT_TRUE((*cluster)->Shutdown().ok());
}

// A worker dies (stops heartbeating) at clock 2; with --tolerate_worker_failures
// the scheduler tells the servers, and the others get past the bound and finish.
void RunWithLostWorker(int staleness) {
  testing::LocalClusterOptions o;
  o.num_servers = 2;
  o.num_workers = 3;
  o.tables = "emb:dim=1,opt=sgd,lr=1";
  o.staleness = staleness;
  o.tolerate_worker_failures = true;
  o.heartbeat_interval = std::chrono::milliseconds(50);
  o.node_timeout = std::chrono::milliseconds(600);
  auto cluster = testing::LocalCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  const std::vector<uint64_t> keys = {11, 22, 33};
  const std::vector<float> grads(keys.size(), -1.0f);
  std::atomic<int> errors{0};
  auto run = [&](int w, int clocks) {
    worker::Client& client = (*cluster)->client(w);
    for (int c = 0; c < clocks; ++c) {
      if (!client.Pull("emb", keys)->Wait().ok()) errors.fetch_add(1);
      if (!client.Push("emb", keys, grads)->Wait().ok()) errors.fetch_add(1);
      if (!client.Clock()->Wait().ok()) errors.fetch_add(1);
    }
  };
  {
    std::vector<std::jthread> workers;
    for (int w = 0; w < 2; ++w) workers.emplace_back(run, w, 8);
    workers.emplace_back([&] {
      run(2, 2);
      (*cluster)->LoseWorker(2);  // the others now wait at clock 3 until it is declared lost
    });
  }
  EXPECT_EQ(errors.load(), 0);
  // Every acknowledged push was applied: 2 pushes of the lost worker, 16 of the others.
  auto pull = (*cluster)->client(0).Pull("emb", keys);
  ASSERT_TRUE(pull->Wait().ok());
  for (float v : pull->values()) EXPECT_EQ(v, 18.0f);
  EXPECT_TRUE((*cluster)->Shutdown().ok());
}

TEST(StalenessBoundTest, SynchronousJobGoesOnAfterAWorkerIsLost) { RunWithLostWorker(0); }
TEST(StalenessBoundTest, BoundedJobGoesOnAfterAWorkerIsLost) { RunWithLostWorker(1); }
TEST(StalenessBoundTest, AsynchronousJobGoesOnAfterAWorkerIsLost) { RunWithLostWorker(-1); }

}  // namespace
}  // namespace eddy::server
