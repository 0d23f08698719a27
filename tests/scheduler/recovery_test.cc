// The scheduler's side of a rollback on its own: a lost server or worker, its
// replacement, loading, a second loss during recovery, stale reports, timeouts.
#include "scheduler/recovery.h"

#include <gtest/gtest.h>

namespace eddy::scheduler {
namespace {

using Phase = Recovery::Phase;
const SteadyClock::time_point kT0 = SteadyClock::time_point() + std::chrono::hours(1);
constexpr std::chrono::milliseconds kTimeout{30'000};

TEST(RecoveryTest, LostServerReplacedThenEveryServerLoadsThenWorkersRestart) {
  Recovery r(3, kTimeout);
  EXPECT_FALSE(r.active());
  Recovery::Step step = r.OnServerLost(1, /*last_committed=*/7, "server 1 stopped answering", kT0);
  EXPECT_FALSE(step.fail);
  EXPECT_EQ(step.recover_servers, (std::vector<int>{0, 2}));
  EXPECT_TRUE(step.pause_workers);
  EXPECT_EQ(r.phase(), Phase::kReplacing);
  EXPECT_EQ(r.epoch(), 1u);
  EXPECT_EQ(r.version(), 7u);
  // Survivors may load before the replacement comes.
  EXPECT_FALSE(r.OnServerLoaded(0, 1).restart_workers);
  EXPECT_EQ(r.OnServerRegistered(), 1);
  EXPECT_EQ(r.phase(), Phase::kLoading);
  EXPECT_EQ(r.OnServerRegistered(), std::nullopt);  // no slot left
  EXPECT_FALSE(r.OnServerLoaded(1, 1).restart_workers);
  EXPECT_TRUE(r.OnServerLoaded(2, 1).restart_workers);
  EXPECT_FALSE(r.active());
  EXPECT_EQ(r.recoveries(), 1u);
  EXPECT_FALSE(r.OnTick(kT0 + kTimeout * 2).fail);  // over: no timeout
}

TEST(RecoveryTest, ALossDuringRecoveryStartsTheNextEpochAndStaleReportsAreIgnored) {
  Recovery r(2, kTimeout);
  r.OnServerLost(0, 3, "server 0 lost", kT0);
  EXPECT_EQ(r.OnServerRegistered(), 0);
  EXPECT_FALSE(r.OnServerLoaded(1, 1).restart_workers);
  // Server 1 dies while loading: epoch 2, both reload (the replacement of 0 too).
  Recovery::Step step = r.OnServerLost(1, 3, "server 1 lost", kT0 + std::chrono::seconds(1));
  EXPECT_EQ(r.epoch(), 2u);
  EXPECT_EQ(step.recover_servers, (std::vector<int>{0}));
  EXPECT_EQ(r.recoveries(), 1u);  // one recovery, two epochs
  EXPECT_FALSE(r.OnServerLoaded(0, 1).restart_workers);  // epoch 1: stale
  EXPECT_EQ(r.OnServerRegistered(), 1);
  EXPECT_FALSE(r.OnServerLoaded(0, 2).restart_workers);
  EXPECT_FALSE(r.OnServerLoaded(5, 2).restart_workers);  // no such server
  EXPECT_TRUE(r.OnServerLoaded(1, 2).restart_workers);
}

TEST(RecoveryTest, NoReplacementInTimeIsAnErrorSayingWhatToDo) {
  Recovery r(2, kTimeout);
  r.OnServerLost(1, 0, "server 1 (host:42) stopped answering", kT0);
  EXPECT_EQ(r.version(), 0u);  // nothing committed yet: the initial state
  EXPECT_FALSE(r.OnTick(kT0 + kTimeout - std::chrono::milliseconds(1)).fail);
  Recovery::Step step = r.OnTick(kT0 + kTimeout);
  ASSERT_TRUE(step.fail);
  EXPECT_NE(step.fail->message().find("server 1 (host:42) stopped answering"), std::string::npos);
  EXPECT_NE(step.fail->message().find("no replacement for server 1 registered"), std::string::npos);
  EXPECT_NE(step.fail->message().find("--resume_from=latest"), std::string::npos);
}

TEST(RecoveryTest, LostWorkerRollsEveryServerBackAndRestartsOnceReplaced) {
  Recovery r(2, kTimeout);
  Recovery::Step step = r.OnWorkerLost(1, 5, "worker 1 stopped answering", kT0);
  EXPECT_FALSE(step.fail);
  EXPECT_EQ(step.recover_servers, (std::vector<int>{0, 1}));  // every server rolls back
  EXPECT_TRUE(step.pause_workers);
  EXPECT_EQ(r.epoch(), 1u);
  EXPECT_EQ(r.vacant_workers(), (std::set<int>{1}));
  // Both servers loaded, but the worker's slot is empty: nobody restarts yet.
  EXPECT_FALSE(r.OnServerLoaded(0, 1).restart_workers);
  EXPECT_FALSE(r.OnServerLoaded(1, 1).restart_workers);
  EXPECT_EQ(r.OnServerRegistered(), std::nullopt);  // no server slot is vacant
  Recovery::Step admitted;
  EXPECT_EQ(r.OnWorkerRegistered(-1, &admitted), 1);
  EXPECT_TRUE(admitted.restart_workers);  // the servers were ready: at once
  EXPECT_FALSE(r.active());
  Recovery::Step none;
  EXPECT_EQ(r.OnWorkerRegistered(-1, &none), std::nullopt);
}

TEST(RecoveryTest, AReplacementWorkerTakesTheSlotItAsksForElseTheLowest) {
  Recovery r(1, kTimeout);
  r.OnWorkerLost(0, 2, "worker 0 lost", kT0);
  r.OnWorkerLost(3, 2, "worker 3 lost", kT0);
  EXPECT_EQ(r.epoch(), 2u);
  Recovery::Step step;
  EXPECT_EQ(r.OnWorkerRegistered(3, &step), 3);
  EXPECT_FALSE(step.restart_workers);
  EXPECT_EQ(r.OnWorkerRegistered(7, &step), 0);
  EXPECT_FALSE(step.restart_workers);  // the server has not loaded yet
  EXPECT_EQ(r.phase(), Phase::kLoading);
  EXPECT_FALSE(r.OnServerLoaded(0, 1).restart_workers);  // stale epoch
  EXPECT_TRUE(r.OnServerLoaded(0, 2).restart_workers);
}

TEST(RecoveryTest, NoReplacementWorkerInTimeNamesIt) {
  Recovery r(2, kTimeout);
  r.OnWorkerLost(1, 4, "worker 1 (host:7) stopped answering", kT0);
  r.OnServerLoaded(0, 1);
  r.OnServerLoaded(1, 1);
  Recovery::Step step = r.OnTick(kT0 + kTimeout);
  ASSERT_TRUE(step.fail);
  EXPECT_NE(step.fail->message().find("no replacement for worker 1 registered"),
            std::string::npos);
  EXPECT_NE(step.fail->message().find("--supervise"), std::string::npos);
}

TEST(RecoveryTest, AVacantWorkerSlotIsOfferedForAdoptionOnceAfterTheWait) {
  Recovery r(1, kTimeout, /*adopt_after=*/std::chrono::seconds(5));
  r.OnWorkerLost(1, 2, "worker 1 lost", kT0);
  EXPECT_TRUE(r.OnTick(kT0 + std::chrono::seconds(4)).adopt_workers.empty());
  EXPECT_EQ(r.OnTick(kT0 + std::chrono::seconds(5)).adopt_workers, (std::vector<int>{1}));
  EXPECT_TRUE(r.OnTick(kT0 + std::chrono::seconds(6)).adopt_workers.empty());  // asked once
  // The adopter registers for the slot like any replacement.
  Recovery::Step step;
  EXPECT_EQ(r.OnWorkerRegistered(1, &step), 1);
  EXPECT_TRUE(r.OnServerLoaded(0, 1).restart_workers);
}

TEST(RecoveryTest, WithoutAdoptionAVacantSlotWaitsForAReplacement) {
  Recovery r(1, kTimeout);
  r.OnWorkerLost(0, 2, "worker 0 lost", kT0);
  EXPECT_TRUE(r.OnTick(kT0 + kTimeout - std::chrono::milliseconds(1)).adopt_workers.empty());
}

TEST(RecoveryTest, OffFailsAtOnce) {
  Recovery r(2, std::chrono::milliseconds(0));
  Recovery::Step step = r.OnServerLost(0, 4, "server 0 lost", kT0);
  ASSERT_TRUE(step.fail);
  EXPECT_NE(step.fail->message().find("recovery is off"), std::string::npos);
  EXPECT_FALSE(r.active());
  EXPECT_TRUE(r.OnWorkerLost(1, 4, "worker 1 lost", kT0).fail);
}

}  // namespace
}  // namespace eddy::scheduler
