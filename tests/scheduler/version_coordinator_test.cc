// The scheduler's side of model versions on its own, against a fake sink and a
// fake clock: triggers, numbering, full and delta, READY and DONE from every
// server, cuts that must agree, commit, abort (server error, timeout), the last
// version at the end.
#include "scheduler/version_coordinator.h"

#include <gtest/gtest.h>

#include <utility>

namespace eddy::scheduler {
namespace {

class FakeSink : public VersionSink {
 public:
  StatusOr<std::string> BeginVersion(uint64_t version, uint64_t parent) override {
    if (!begin_error.ok()) return begin_error;
    begun.emplace_back(version, parent);
    return "/tmp/v" + std::to_string(version);
  }
  void RequestServers(const proto::SnapshotRequest& request) override {
    requests.push_back(request);
  }
  void TellWorkers(uint64_t version) override { told.push_back(version); }
  Status CommitVersion(uint64_t version, const std::map<int, proto::SnapshotReport>& reports,
                       VersionSummary* summary) override {
    if (!commit_error.ok()) return commit_error;
    committed.push_back(version);
    committed_reports = reports.size();
    summary->dir = "/models/" + std::to_string(version);
    return OkStatus();
  }
  void AbortVersion(uint64_t version) override { aborted.push_back(version); }
  void ApplyRetention(int keep_full) override { retention.push_back(keep_full); }
  void VersionFinished(const VersionSummary& summary) override { finished.push_back(summary); }

  Status begin_error;
  Status commit_error;
  std::vector<std::pair<uint64_t, uint64_t>> begun;  // (version, parent)
  std::vector<proto::SnapshotRequest> requests;
  std::vector<uint64_t> told;
  std::vector<uint64_t> committed;
  size_t committed_reports = 0;
  std::vector<uint64_t> aborted;
  std::vector<int> retention;
  std::vector<VersionSummary> finished;
};

class VersionCoordinatorTest : public ::testing::Test {
 protected:
  VersionPolicy Policy(int servers) {
    VersionPolicy p;
    p.num_servers = servers;
    p.full_every = 3;
    p.keep_full_versions = 2;
    p.timeout = std::chrono::seconds(10);
    p.clock = [this] { return now_; };
    return p;
  }
  static proto::SnapshotReport Report(uint64_t version, int server, int64_t cut_clock = 4) {
    proto::SnapshotReport r;
    r.set_version(version);
    r.set_server(server);
    r.set_rows(10);
    r.set_pause_seconds(0.001 * (server + 1));
    proto::WorkerCut* c = r.add_cuts();
    c->set_worker(0);
    c->set_clock(cut_clock);
    c->set_rows_consumed(40);
    proto::Manifest::FileEntry* f = r.add_files();
    f->set_bytes(100);
    r.add_file_dense(false);
    r.add_file_dims(8);
    r.add_file_state_floats(0);
    return r;
  }
  // Runs the open version to its end: READY and DONE from every server.
  void Complete(VersionCoordinator& vc, uint64_t version, int servers) {
    for (int s = 0; s < servers; ++s) vc.OnReady(s, version);
    for (int s = 0; s < servers; ++s)
      vc.OnDone(s, "server " + std::to_string(s), Report(version, s));
  }

  SteadyClock::time_point now_ = SteadyClock::time_point() + std::chrono::hours(1);
  FakeSink sink_;
};

TEST_F(VersionCoordinatorTest, NumbersVersionsAfterThoseOnDiskAndTakesDeltasBetweenFullOnes) {
  VersionCoordinator vc(Policy(1), /*first_version=*/5, &sink_);
  vc.Start();
  for (uint64_t v = 5; v <= 8; ++v) {
    EXPECT_EQ(vc.RequestNow(), v);
    Complete(vc, v, 1);
  }
  ASSERT_EQ(sink_.begun.size(), 4u);
  // full_every = 3: full, delta, delta, full.
  EXPECT_EQ(sink_.begun[0], std::make_pair(uint64_t{5}, uint64_t{0}));
  EXPECT_EQ(sink_.begun[1], std::make_pair(uint64_t{6}, uint64_t{5}));
  EXPECT_EQ(sink_.begun[2], std::make_pair(uint64_t{7}, uint64_t{6}));
  EXPECT_EQ(sink_.begun[3], std::make_pair(uint64_t{8}, uint64_t{0}));
  EXPECT_EQ(sink_.committed, (std::vector<uint64_t>{5, 6, 7, 8}));
  EXPECT_EQ(sink_.retention, (std::vector<int>{2, 2, 2, 2}));
  EXPECT_EQ(sink_.requests[1].parent_version(), 5u);
  EXPECT_EQ(sink_.requests[1].temp_dir(), "/tmp/v6");
}

TEST_F(VersionCoordinatorTest, WorkersAreToldOnceEveryServerIsReady) {
  VersionCoordinator vc(Policy(3), 1, &sink_);
  vc.Start();
  vc.RequestNow();
  vc.OnReady(0, 1);
  vc.OnReady(0, 1);  // a duplicate does not count twice
  vc.OnReady(1, 2);  // another version
  vc.OnReady(1, 1);
  EXPECT_TRUE(sink_.told.empty());
  vc.OnReady(2, 1);
  EXPECT_EQ(sink_.told, std::vector<uint64_t>{1});
  vc.OnReady(2, 1);
  EXPECT_EQ(sink_.told.size(), 1u);
}

TEST_F(VersionCoordinatorTest, CommitsOnceEveryServerReportedAndSumsTheReports) {
  VersionCoordinator vc(Policy(2), 1, &sink_);
  vc.Start();
  vc.RequestNow();
  vc.OnReady(0, 1);
  vc.OnReady(1, 1);
  now_ += std::chrono::seconds(3);
  vc.OnDone(1, "server 1", Report(1, 1));
  EXPECT_TRUE(sink_.committed.empty());
  EXPECT_TRUE(vc.pending());
  vc.OnDone(0, "server 0", Report(1, 0));
  EXPECT_FALSE(vc.pending());
  EXPECT_EQ(sink_.committed, std::vector<uint64_t>{1});
  EXPECT_EQ(sink_.committed_reports, 2u);
  ASSERT_EQ(sink_.finished.size(), 1u);
  const VersionSummary& s = sink_.finished[0];
  EXPECT_TRUE(s.ok);
  EXPECT_EQ(s.dir, "/models/1");
  EXPECT_EQ(s.rows, 20u);
  EXPECT_EQ(s.bytes, 200u);
  EXPECT_DOUBLE_EQ(s.pause_seconds, 0.002);
  EXPECT_DOUBLE_EQ(s.total_seconds, 3.0);
  ASSERT_EQ(s.cuts.size(), 1u);
  EXPECT_EQ(s.cuts[0].rows_consumed(), 40u);
}

TEST_F(VersionCoordinatorTest, ServersThatDisagreeOnTheCutAbortAndTheNextVersionIsFull) {
  VersionCoordinator vc(Policy(2), 1, &sink_);
  vc.Start();
  vc.RequestNow();
  Complete(vc, 1, 2);  // full, committed
  vc.RequestNow();     // a delta
  vc.OnDone(0, "server 0", Report(2, 0, /*cut_clock=*/4));
  vc.OnDone(1, "server 1", Report(2, 1, /*cut_clock=*/5));
  EXPECT_EQ(sink_.aborted, std::vector<uint64_t>{2});
  ASSERT_EQ(sink_.finished.size(), 2u);
  EXPECT_FALSE(sink_.finished[1].ok);
  EXPECT_NE(sink_.finished[1].error.find("disagree"), std::string::npos);
  vc.RequestNow();
  ASSERT_EQ(sink_.begun.size(), 3u);
  EXPECT_EQ(sink_.begun[1].second, 1u);  // the delta
  EXPECT_EQ(sink_.begun[2].second, 0u);  // full after the failure
}

TEST_F(VersionCoordinatorTest, AServerErrorAbortsAtOnceAndLateReportsAreIgnored) {
  VersionCoordinator vc(Policy(2), 1, &sink_);
  vc.Start();
  vc.RequestNow();
  proto::SnapshotReport bad = Report(1, 0);
  bad.set_error("disk full");
  vc.OnDone(0, "server 0 (host:1)", bad);
  EXPECT_FALSE(vc.pending());
  EXPECT_EQ(sink_.aborted, std::vector<uint64_t>{1});
  EXPECT_EQ(sink_.finished.at(0).error, "server 0 (host:1): disk full");
  vc.OnDone(1, "server 1", Report(1, 1));  // late
  EXPECT_TRUE(sink_.committed.empty());
  EXPECT_EQ(sink_.finished.size(), 1u);
}

TEST_F(VersionCoordinatorTest, InconsistentReportsAndFailedCommitsAbort) {
  VersionCoordinator vc(Policy(1), 1, &sink_);
  vc.Start();
  vc.RequestNow();
  proto::SnapshotReport r = Report(1, 0);
  r.add_file_dims(3);  // more dims than files
  vc.OnDone(0, "server 0", r);
  EXPECT_EQ(sink_.aborted, std::vector<uint64_t>{1});
  EXPECT_NE(sink_.finished.at(0).error.find("inconsistent"), std::string::npos);

  sink_.commit_error = DataLossError("rename failed");
  vc.RequestNow();
  vc.OnDone(0, "server 0", Report(2, 0));
  EXPECT_EQ(sink_.aborted, (std::vector<uint64_t>{1, 2}));
  EXPECT_NE(sink_.finished.at(1).error.find("rename failed"), std::string::npos);
  EXPECT_TRUE(sink_.retention.empty());
}

TEST_F(VersionCoordinatorTest, AVersionNotWrittenInTimeFails) {
  VersionCoordinator vc(Policy(2), 1, &sink_);
  vc.Start();
  vc.RequestNow();
  vc.OnDone(0, "server 0", Report(1, 0));
  now_ += std::chrono::seconds(10);
  vc.Tick(std::nullopt, false, false);
  EXPECT_TRUE(vc.pending());  // not past the timeout yet
  now_ += std::chrono::milliseconds(1);
  vc.Tick(std::nullopt, false, false);
  EXPECT_FALSE(vc.pending());
  EXPECT_EQ(sink_.aborted, std::vector<uint64_t>{1});
  EXPECT_NE(sink_.finished.at(0).error.find("within 10.0 s"), std::string::npos);
}

TEST_F(VersionCoordinatorTest, TakesVersionsByTimeRowsAndOnDemandWhileWorkersRun) {
  VersionPolicy p = Policy(1);
  p.interval = std::chrono::seconds(60);
  p.every_rows = 100;
  VersionCoordinator vc(p, 1, &sink_);
  vc.Tick(1000, true, false);  // not started: nothing
  EXPECT_TRUE(sink_.begun.empty());
  vc.Start();
  EXPECT_EQ(vc.next_deadline(), now_ + std::chrono::seconds(60));
  vc.Tick(50, false, false);
  EXPECT_TRUE(sink_.begun.empty());
  vc.Tick(250, false, false);  // rows
  ASSERT_EQ(sink_.begun.size(), 1u);
  Complete(vc, 1, 1);
  vc.Tick(299, false, false);  // the next is at 300
  EXPECT_EQ(sink_.begun.size(), 1u);
  now_ += std::chrono::seconds(60);
  vc.Tick(299, false, false);  // time
  ASSERT_EQ(sink_.begun.size(), 2u);
  Complete(vc, 2, 1);
  vc.Tick(299, true, false);  // on demand
  ASSERT_EQ(sink_.begun.size(), 3u);
  Complete(vc, 3, 1);
  vc.Tick(10'000, true, /*workers_done=*/true);  // the last version is ReadyToEnd's
  EXPECT_EQ(sink_.begun.size(), 3u);
}

TEST_F(VersionCoordinatorTest, ARequestWhileAVersionIsOpenStartsRightAfterIt) {
  VersionCoordinator vc(Policy(1), 1, &sink_);
  vc.Start();
  EXPECT_EQ(vc.RequestNow(), 1u);
  EXPECT_EQ(vc.RequestNow(), 2u);
  EXPECT_EQ(sink_.begun.size(), 1u);
  Complete(vc, 1, 1);
  ASSERT_EQ(sink_.begun.size(), 2u);
  EXPECT_EQ(sink_.begun[1].first, 2u);
  EXPECT_TRUE(vc.pending());
}

TEST_F(VersionCoordinatorTest, TheJobEndsAfterTheLastVersion) {
  VersionCoordinator vc(Policy(1), 1, &sink_);
  vc.Start();
  EXPECT_FALSE(vc.ReadyToEnd());  // starts the last version
  EXPECT_EQ(sink_.begun.size(), 1u);
  EXPECT_FALSE(vc.ReadyToEnd());
  Complete(vc, 1, 1);
  EXPECT_TRUE(vc.ReadyToEnd());
  EXPECT_EQ(sink_.begun.size(), 1u);

  VersionPolicy p = Policy(1);
  p.at_end = false;
  VersionCoordinator no_last(p, 1, &sink_);
  no_last.Start();
  EXPECT_TRUE(no_last.ReadyToEnd());
}

TEST_F(VersionCoordinatorTest, AVersionThatCannotBeginFailsWithoutBlockingTheEnd) {
  sink_.begin_error = FailedPreconditionError("read-only model_dir");
  VersionCoordinator vc(Policy(1), 1, &sink_);
  vc.Start();
  EXPECT_TRUE(vc.ReadyToEnd());
  ASSERT_EQ(sink_.finished.size(), 1u);
  EXPECT_FALSE(sink_.finished[0].ok);
  EXPECT_NE(sink_.finished[0].error.find("read-only"), std::string::npos);
  EXPECT_TRUE(sink_.requests.empty());
}

}  // namespace
}  // namespace eddy::scheduler
