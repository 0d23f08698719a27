// The server's side of a model version on its own: markers in any order, lost
// workers, the per-clock (BSP) target clock, requests while a version is open,
// duplicate, late and malformed markers, deltas and the report.
#include "server/version_cut.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

namespace eddy::server {
namespace {

using State = VersionCut::State;

const SteadyClock::time_point kT0 = SteadyClock::time_point() + std::chrono::hours(1);

proto::SnapshotRequest Request(uint64_t version, uint64_t parent = 0) {
  proto::SnapshotRequest r;
  r.set_version(version);
  r.set_parent_version(parent);
  r.set_temp_dir("/tmp/v" + std::to_string(version));
  return r;
}

Message Push(int worker, uint64_t id) {
  Message m{MakeHeader(proto::PUSH, id), {}, {}};
  m.header.set_sender(worker);
  return m;
}

VersionCut::Step Marker(VersionCut& cut, int worker, int64_t version, int64_t clock,
                        uint64_t rows) {
  StatusOr<VersionCut::Step> step = cut.OnMarker(worker, version, clock, rows, kT0);
  EXPECT_TRUE(step.ok()) << step.status();
  return step.ok() ? std::move(step).value() : VersionCut::Step();
}

TEST(VersionCutTest, MarkersInAnyOrderCaptureAfterTheLastAndHoldLaterPushes) {
  std::vector<int> order = {0, 1, 2};
  do {
    VersionCut cut(3, /*per_clock=*/false);
    EXPECT_EQ(cut.state(), State::kIdle);
    VersionCut::Step step = cut.OnRequest(Request(4), kT0);
    EXPECT_TRUE(step.send_ready);
    EXPECT_FALSE(step.capture);
    EXPECT_EQ(cut.state(), State::kCollecting);
    for (size_t i = 0; i < order.size(); ++i) {
      const int w = order[i];
      EXPECT_FALSE(cut.HoldsPushesOf(w));
      step = Marker(cut, w, 4, 10 + w, 100 * (w + 1));
      EXPECT_EQ(step.capture, i + 1 == order.size()) << "marker " << i;
      EXPECT_EQ(step.bsp_clock, -1);
      if (step.capture) break;
      // A marked worker's later pushes belong to the next version.
      EXPECT_TRUE(cut.HoldsPushesOf(w));
      cut.Hold(w == 0 ? "r0" : "", Push(w, 50 + i));
    }
    std::vector<VersionCut::Held> held = cut.Captured(kT0 + std::chrono::seconds(2), 9u);
    ASSERT_EQ(held.size(), 2u);  // the pushes of the first two marked workers, in order
    EXPECT_EQ(held[0].push.header.request_id(), 50u);
    EXPECT_EQ(held[1].push.header.request_id(), 51u);
    EXPECT_EQ(held[0].routing_id, order[0] == 0 ? "r0" : "");
    EXPECT_EQ(cut.state(), State::kWriting);
    EXPECT_FALSE(cut.HoldsPushesOf(order[0]));
    proto::SnapshotReport report = cut.Report(0.25);
    EXPECT_EQ(report.version(), 4u);
    EXPECT_EQ(report.pause_seconds(), 0.25);
    EXPECT_EQ(report.window_seconds(), 2.0);
    EXPECT_TRUE(report.error().empty());
    ASSERT_EQ(report.cuts_size(), 3);
    for (int w = 0; w < 3; ++w) {
      EXPECT_EQ(report.cuts(w).worker(), w);
      EXPECT_EQ(report.cuts(w).clock(), 10 + w);
      EXPECT_EQ(report.cuts(w).rows_consumed(), 100u * (w + 1));
    }
    cut.Written(4);
    EXPECT_EQ(cut.state(), State::kIdle);
  } while (std::next_permutation(order.begin(), order.end()));
}

TEST(VersionCutTest, MarkersBeforeTheRequestWaitForIt) {
  VersionCut cut(2, false);
  EXPECT_FALSE(Marker(cut, 0, 1, 3, 30).capture);
  EXPECT_FALSE(Marker(cut, 1, 1, 4, 40).capture);
  EXPECT_EQ(cut.request(), nullptr);
  VersionCut::Step step = cut.OnRequest(Request(1), kT0);
  EXPECT_TRUE(step.send_ready);
  EXPECT_TRUE(step.capture);
  ASSERT_NE(cut.request(), nullptr);
  EXPECT_EQ(cut.request()->temp_dir(), "/tmp/v1");
}

TEST(VersionCutTest, ALostWorkerIsNotWaitedForAndIsCutAtItsLastClock) {
  VersionCut cut(2, false);
  cut.OnClock(1, 2, 20);
  cut.OnClock(1, 3, 35);
  cut.OnClock(1, std::numeric_limits<int64_t>::max(), 999);  // "finished": no position
  cut.OnRequest(Request(2), kT0);
  EXPECT_FALSE(Marker(cut, 0, 2, 5, 50).capture);
  VersionCut::Step step = cut.OnWorkerLost(1);
  EXPECT_TRUE(step.capture);
  cut.Captured(kT0, 1u);
  proto::SnapshotReport report = cut.Report(0);
  ASSERT_EQ(report.cuts_size(), 2);
  EXPECT_EQ(report.cuts(1).clock(), 3);
  EXPECT_EQ(report.cuts(1).rows_consumed(), 35u);
}

TEST(VersionCutTest, WorkerLostBeforeTheRequestDoesNotBlockIt) {
  VersionCut cut(2, false);
  EXPECT_FALSE(cut.OnWorkerLost(0).capture);  // nothing open
  cut.OnRequest(Request(1), kT0);
  EXPECT_TRUE(Marker(cut, 1, 1, 1, 10).capture);
}

TEST(VersionCutTest, PerClockCutWaitsForTheLargestMarkerClock) {
  VersionCut cut(2, /*per_clock=*/true);
  for (int w = 0; w < 2; ++w) {
    for (int c = 1; c <= 4; ++c) cut.OnClock(w, c, 100 * w + 10 * c);
  }
  EXPECT_FALSE(cut.OnClocksClosed(1).capture);
  cut.OnRequest(Request(3), kT0);
  EXPECT_FALSE(Marker(cut, 0, 3, 2, 20).capture);
  // Pushes are summed per clock, never held.
  EXPECT_FALSE(cut.HoldsPushesOf(0));
  VersionCut::Step step = Marker(cut, 1, 3, 3, 130);
  EXPECT_FALSE(step.capture);
  EXPECT_EQ(cut.state(), State::kAwaitingClock);
  EXPECT_EQ(cut.target_clock(), 3);
  EXPECT_FALSE(cut.OnClocksClosed(2).capture);
  step = cut.OnClocksClosed(4);
  EXPECT_TRUE(step.capture);
  EXPECT_EQ(step.bsp_clock, 3);
  cut.Captured(kT0, 1u);
  // Every worker is cut at clock 3 with the position it reported with it.
  proto::SnapshotReport report = cut.Report(0);
  ASSERT_EQ(report.cuts_size(), 2);
  EXPECT_EQ(report.cuts(0).clock(), 3);
  EXPECT_EQ(report.cuts(0).rows_consumed(), 30u);
  EXPECT_EQ(report.cuts(1).clock(), 3);
  EXPECT_EQ(report.cuts(1).rows_consumed(), 130u);
  EXPECT_FALSE(cut.OnClocksClosed(5).capture);  // once
}

// Pushes do not wait for clocks, so a worker may run thousands of clocks ahead of
// the slowest one; its position at the cut clock must still be known.
TEST(VersionCutTest, PerClockCutKnowsTheClockOfAWorkerFarAhead) {
  VersionCut cut(2, true);
  for (int c = 1; c <= 5000; ++c) cut.OnClock(1, c, 2 * c);
  cut.OnClock(0, 1, 1);
  cut.OnClock(0, 2, 2);
  cut.OnClocksClosed(2);
  cut.OnRequest(Request(1), kT0);
  Marker(cut, 1, 1, 5000, 10000);
  Marker(cut, 0, 1, 2, 2);
  EXPECT_EQ(cut.target_clock(), 5000);
  for (int c = 3; c <= 5000; ++c) cut.OnClock(0, c, c);
  VersionCut::Step step = cut.OnClocksClosed(5000);
  ASSERT_TRUE(step.capture);
  cut.Captured(kT0, 1u);
  proto::SnapshotReport report = cut.Report(0);
  EXPECT_EQ(report.cuts(0).rows_consumed(), 5000u);
  EXPECT_EQ(report.cuts(1).rows_consumed(), 10000u);
}

TEST(VersionCutTest, PerClockCutAtAnEarlyClockOfAWorkerFarAhead) {
  VersionCut cut(2, true);
  for (int c = 1; c <= 3000; ++c) cut.OnClock(1, c, 2 * c);
  cut.OnClock(0, 1, 1);
  cut.OnRequest(Request(1), kT0);
  Marker(cut, 0, 1, 1, 1);
  Marker(cut, 1, 1, 1, 2);  // its marker went out right behind its clock 1
  VersionCut::Step step = cut.OnClocksClosed(1);
  ASSERT_TRUE(step.capture);
  cut.Captured(kT0, 1u);
  EXPECT_EQ(cut.Report(0).cuts(1).rows_consumed(), 2u);
}

TEST(VersionCutTest, PerClockCutCapturesAtOnceWhenTheClockClosedAlready) {
  VersionCut cut(2, true);
  cut.OnClocksClosed(5);
  cut.OnRequest(Request(1), kT0);
  Marker(cut, 0, 1, 4, 40);
  VersionCut::Step step = Marker(cut, 1, 1, 5, 50);
  EXPECT_TRUE(step.capture);
  EXPECT_EQ(step.bsp_clock, 5);
}

TEST(VersionCutTest, ANewerRequestAbandonsAnUncopiedVersionAndReleasesItsPushes) {
  VersionCut cut(2, false);
  cut.OnRequest(Request(1), kT0);
  Marker(cut, 0, 1, 1, 10);
  cut.Hold("", Push(0, 7));
  EXPECT_EQ(cut.held(), 1u);
  VersionCut::Step step = cut.OnRequest(Request(2), kT0);
  EXPECT_EQ(step.abandoned, 1u);
  ASSERT_EQ(step.release.size(), 1u);
  EXPECT_EQ(step.release[0].push.header.request_id(), 7u);
  EXPECT_TRUE(step.send_ready);
  EXPECT_EQ(cut.version(), 2u);
  EXPECT_FALSE(cut.HoldsPushesOf(0));
  // Markers of the abandoned version are late now.
  step = Marker(cut, 1, 1, 1, 10);
  EXPECT_FALSE(step.capture);
  EXPECT_FALSE(step.ignored.empty());
  EXPECT_FALSE(cut.HoldsPushesOf(1));
}

TEST(VersionCutTest, RequestsWhileAVersionIsWrittenAreIgnored) {
  VersionCut cut(1, false);
  cut.OnRequest(Request(1), kT0);
  ASSERT_TRUE(Marker(cut, 0, 1, 1, 10).capture);
  cut.Captured(kT0, 1u);
  VersionCut::Step step = cut.OnRequest(Request(2), kT0);
  EXPECT_FALSE(step.send_ready);
  EXPECT_FALSE(step.ignored.empty());
  EXPECT_EQ(cut.version(), 1u);
  EXPECT_FALSE(Marker(cut, 0, 2, 2, 20).capture);
  cut.Written(7);  // not the open version
  EXPECT_EQ(cut.state(), State::kWriting);
  cut.Written(1);
  EXPECT_TRUE(cut.OnRequest(Request(2), kT0).send_ready);
}

TEST(VersionCutTest, DuplicateRequestsAndMarkersAreIgnored) {
  VersionCut cut(2, false);
  EXPECT_TRUE(cut.OnRequest(Request(1), kT0).send_ready);
  EXPECT_FALSE(cut.OnRequest(Request(1), kT0).send_ready);
  Marker(cut, 0, 1, 1, 10);
  VersionCut::Step step = Marker(cut, 0, 1, 9, 90);
  EXPECT_FALSE(step.capture);
  EXPECT_FALSE(step.ignored.empty());
  ASSERT_TRUE(Marker(cut, 1, 1, 2, 20).capture);
  cut.Captured(kT0, 1u);
  step = Marker(cut, 1, 1, 3, 30);  // after the copy
  EXPECT_FALSE(step.capture);
  EXPECT_FALSE(step.ignored.empty());
  proto::SnapshotReport report = cut.Report(0);
  EXPECT_EQ(report.cuts(0).clock(), 1);  // the first marker counts
  EXPECT_EQ(report.cuts(1).clock(), 2);
}

TEST(VersionCutTest, MalformedMarkersAreErrors) {
  VersionCut cut(2, false);
  cut.OnRequest(Request(1), kT0);
  EXPECT_FALSE(cut.OnMarker(-1, 1, 0, 0, kT0).ok());
  EXPECT_FALSE(cut.OnMarker(2, 1, 0, 0, kT0).ok());
  EXPECT_FALSE(cut.OnMarker(0, 0, 0, 0, kT0).ok());
  EXPECT_FALSE(cut.OnMarker(0, -3, 0, 0, kT0).ok());
  EXPECT_FALSE(cut.HoldsPushesOf(0));
  EXPECT_FALSE(cut.HoldsPushesOf(-1));
  EXPECT_FALSE(cut.HoldsPushesOf(2));
}

TEST(VersionCutTest, DeltasNeedTheParentsCaptureOnThisServer) {
  VersionCut cut(1, false);
  cut.OnRequest(Request(5, /*parent=*/4), kT0);
  StatusOr<uint32_t> since = cut.SinceEpoch();
  EXPECT_FALSE(since.ok());
  ASSERT_TRUE(Marker(cut, 0, 5, 1, 1).capture);
  cut.Captured(kT0, since.status());
  EXPECT_NE(cut.Report(0).error().find("parent version 4"), std::string::npos);
  cut.Written(5);

  cut.OnRequest(Request(6), kT0);
  ASSERT_TRUE(cut.SinceEpoch().ok());
  EXPECT_EQ(*cut.SinceEpoch(), 0u);  // full
  Marker(cut, 0, 6, 2, 2);
  cut.Captured(kT0, 17u);
  EXPECT_TRUE(cut.Report(0).error().empty());
  cut.Written(6);

  cut.OnRequest(Request(7, 6), kT0);
  ASSERT_TRUE(cut.SinceEpoch().ok());
  EXPECT_EQ(*cut.SinceEpoch(), 17u);
}

}  // namespace
}  // namespace eddy::server

namespace eddy::server {
namespace {

// A partitioned stream's position (opaque here) goes with the rows into the cut:
// from the marker, from the clock a per-clock cut is taken at, and from a lost
// worker's last clock.
TEST(VersionCutTest, StreamStateTravelsWithTheRowsIntoEveryKindOfCut) {
  {
    VersionCut cut(2, /*per_clock=*/false);
    cut.OnClock(1, 4, StreamPoint(40, "w1@4"));
    cut.OnRequest(Request(1), kT0);
    StatusOr<VersionCut::Step> step = cut.OnMarker(0, 1, 3, StreamPoint(30, "w0@3"), kT0);
    ASSERT_TRUE(step.ok());
    EXPECT_TRUE(cut.OnWorkerLost(1).capture);
    cut.Captured(kT0, 1u);
    proto::SnapshotReport report = cut.Report(0);
    ASSERT_EQ(report.cuts_size(), 2);
    EXPECT_EQ(report.cuts(0).stream_state(), "w0@3");
    EXPECT_EQ(report.cuts(0).rows_consumed(), 30u);
    EXPECT_EQ(report.cuts(1).stream_state(), "w1@4");
  }
  {
    VersionCut cut(2, /*per_clock=*/true);
    for (int w = 0; w < 2; ++w) {
      for (int c = 1; c <= 3; ++c) {
        cut.OnClock(w, c, StreamPoint(10 * c, "w" + std::to_string(w) + "@" + std::to_string(c)));
      }
    }
    cut.OnRequest(Request(1), kT0);
    ASSERT_TRUE(cut.OnMarker(0, 1, 2, StreamPoint(20, "w0@2"), kT0).ok());
    ASSERT_TRUE(cut.OnMarker(1, 1, 2, StreamPoint(20, "w1@2"), kT0).ok());
    EXPECT_TRUE(cut.OnClocksClosed(2).capture);
    cut.Captured(kT0, 1u);
    proto::SnapshotReport report = cut.Report(0);
    ASSERT_EQ(report.cuts_size(), 2);
    EXPECT_EQ(report.cuts(0).stream_state(), "w0@2");
    EXPECT_EQ(report.cuts(1).stream_state(), "w1@2");
  }
  {
    // Per-clock cut before any clock: the workers are where they started (a
    // resumed position), as their markers say.
    VersionCut cut(2, /*per_clock=*/true);
    cut.OnRequest(Request(1), kT0);
    ASSERT_TRUE(cut.OnMarker(0, 1, 0, StreamPoint(500, "w0@start"), kT0).ok());
    VersionCut::Step step = cut.OnMarker(1, 1, 0, StreamPoint(700, "w1@start"), kT0).value();
    EXPECT_TRUE(step.capture);
    EXPECT_EQ(step.bsp_clock, 0);
    cut.Captured(kT0, 1u);
    proto::SnapshotReport report = cut.Report(0);
    EXPECT_EQ(report.cuts(0).rows_consumed(), 500u);
    EXPECT_EQ(report.cuts(0).stream_state(), "w0@start");
    EXPECT_EQ(report.cuts(1).stream_state(), "w1@start");
  }
}

}  // namespace
}  // namespace eddy::server
