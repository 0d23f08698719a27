#include "job/offset_committer.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>
#include <mutex>
#include <vector>

#include "worker/data/stream_position.h"

namespace eddy::job {
namespace {

proto::WorkerCut CutWith(int worker, const std::vector<worker::RowOrigin>& rows) {
  worker::PartitionPositions positions;
  for (const auto& r : rows) positions.Advance(r);
  proto::WorkerCut c;
  c.set_worker(worker);
  c.set_stream_state(positions.Serialize("clicks"));
  return c;
}

TEST(OffsetsOfCutsTest, NextOffsetPerPartitionAcrossWorkers) {
  std::vector<proto::WorkerCut> cuts = {
      CutWith(0, {{.partition = 0, .offset = 41}, {.partition = 2, .offset = 7}}),
      // Mid-message (several rows per message): that message is still to be read.
      CutWith(1, {{.partition = 1, .index = 0, .offset = 9, .last_in_message = false}}),
  };
  proto::WorkerCut no_stream;
  no_stream.set_worker(2);
  cuts.push_back(no_stream);
  StatusOr<PartitionOffsets> offsets = OffsetsOfCuts(cuts);
  ASSERT_TRUE(offsets.ok()) << offsets.status();
  EXPECT_EQ(*offsets, (PartitionOffsets{{0, 42}, {1, 9}, {2, 8}}));
}

TEST(OffsetsOfCutsTest, GarbageIsDataLossNamingTheWorker) {
  proto::WorkerCut c;
  c.set_worker(3);
  c.set_stream_state("\xff\xff\xff garbage");
  StatusOr<PartitionOffsets> offsets = OffsetsOfCuts({c});
  EXPECT_EQ(offsets.status().code(), StatusCode::kDataLoss);
  EXPECT_NE(offsets.status().message().find("worker 3"), std::string::npos);
}

TEST(OffsetCommitterTest, CommitsOfferedOffsetsInOrderAndTheNewestWins) {
  std::mutex mu;
  std::vector<PartitionOffsets> seen;
  std::promise<void> first_started;
  std::promise<void> release_first;
  std::shared_future<void> released = release_first.get_future().share();
  bool first = true;
  {
    OffsetCommitter committer([&](const PartitionOffsets& o) -> Status {
      bool block = false;
      {
        std::lock_guard<std::mutex> lock(mu);
        seen.push_back(o);
        block = first;
        first = false;
      }
      if (block) {
        first_started.set_value();
        released.wait();
      }
      return OkStatus();
    });
    committer.Offer(1, {{0, 10}});
    first_started.get_future().wait();
    // While version 1 commits, versions 2 and 3 arrive: only 3 is committed.
    committer.Offer(2, {{0, 20}});
    committer.Offer(3, {{0, 30}});
    committer.Offer(4, {});  // nothing to commit: ignored
    release_first.set_value();
  }  // the destructor commits what is pending
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], (PartitionOffsets{{0, 10}}));
  EXPECT_EQ(seen[1], (PartitionOffsets{{0, 30}}));
}

TEST(OffsetCommitterTest, FailuresAreCountedAndTheNextVersionStillCommits) {
  std::promise<void> done;
  int calls = 0;
  OffsetCommitter committer([&](const PartitionOffsets& o) -> Status {
    ++calls;
    if (o.at(0) == 1) return UnavailableError("broker down");
    done.set_value();
    return OkStatus();
  });
  committer.Offer(1, {{0, 1}});
  while (committer.failures() == 0) std::this_thread::yield();
  committer.Offer(2, {{0, 2}});
  done.get_future().wait();
  while (committer.committed_version() != 2) std::this_thread::yield();
  EXPECT_EQ(committer.failures(), 1u);
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace eddy::job
