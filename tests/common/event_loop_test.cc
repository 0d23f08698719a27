// EventLoop over real sockets: per-socket fairness caps, tickers, Exit, wake-ups
// from other threads and poll failures.
#include "common/event_loop.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

namespace eddy {
namespace {

using std::chrono::milliseconds;

class EventLoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pull_.bind("inproc://event_loop_test");
    push_.connect("inproc://event_loop_test");
  }
  void Queue(int n) {
    for (int i = 0; i < n; ++i) push_.send(zmq::buffer(std::to_string(i)), zmq::send_flags::none);
  }

  zmq::context_t ctx_;
  zmq::socket_t pull_{ctx_, zmq::socket_type::pull};
  zmq::socket_t push_{ctx_, zmq::socket_type::push};
};

// The socket's handler runs at most `cap` times before the waker is served.
std::vector<std::string> RunFairness(zmq::socket_t& pull, int cap, int total) {
  std::vector<std::string> events;
  Waker control;
  control.Notify();
  EventLoop loop;
  int received = 0;
  loop.AddSocket(
      pull,
      [&] {
        zmq::message_t m;
        if (!pull.recv(m)) return loop.Exit(InternalError("nothing to receive"));
        events.push_back(m.to_string());
        if (++received == total) loop.Exit(OkStatus());
      },
      cap);
  loop.AddWaker(control, [&] { events.push_back("control"); });
  Status s = loop.Run();
  EXPECT_TRUE(s.ok()) << s;
  return events;
}

TEST_F(EventLoopTest, ASocketServesAtMostItsCapPerRoundThenTheOthers) {
  Queue(200);
  std::vector<std::string> events = RunFairness(pull_, 64, 200);
  ASSERT_EQ(events.size(), 201u);
  EXPECT_EQ(events[63], "63");
  EXPECT_EQ(events[64], "control");  // after 64 requests, back to the control source
  EXPECT_EQ(events[65], "64");
  EXPECT_EQ(events[200], "199");
}

TEST_F(EventLoopTest, AnUnlimitedSocketIsDrainedBeforeTheOthers) {
  Queue(200);
  std::vector<std::string> events = RunFairness(pull_, EventLoop::kUnlimited, 200);
  ASSERT_EQ(events.size(), 200u);  // Exit after the last message: control never ran
  EXPECT_EQ(events[199], "199");
}

TEST_F(EventLoopTest, TickerRunsAtItsNextTimeWithoutSpinning) {
  EventLoop loop(milliseconds(10'000));
  const auto start = SteadyClock::now();
  const auto due = start + milliseconds(60);
  int calls = 0;
  loop.AddTicker([&](EventLoop::TimePoint now) -> StatusOr<EventLoop::TimePoint> {
    ++calls;
    if (now >= due) loop.Exit(OkStatus());
    return due;
  });
  ASSERT_TRUE(loop.Run().ok());
  EXPECT_GE(SteadyClock::now() - start, milliseconds(60));
  EXPECT_LE(calls, 4);  // the first round, then a wait until `due`
}

TEST_F(EventLoopTest, TickerErrorEndsTheLoopWithIt) {
  EventLoop loop;
  int calls = 0;
  loop.AddTicker([&](EventLoop::TimePoint now) -> StatusOr<EventLoop::TimePoint> {
    if (++calls == 3) return UnavailableError("peer gone");
    return now;  // work again at once
  });
  Status s = loop.Run();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "peer gone");
  EXPECT_EQ(calls, 3);
}

TEST_F(EventLoopTest, ExitSkipsTheRestOfTheRoundAndRunCanBeCalledAgain) {
  Waker first, second;
  first.Notify();
  second.Notify();
  EventLoop loop;
  int first_calls = 0, second_calls = 0, ticks = 0;
  loop.AddWaker(first, [&] {
    ++first_calls;
    loop.Exit(AbortedError("stop here"));
  });
  loop.AddWaker(second, [&] {
    ++second_calls;
    loop.Exit(OkStatus());
  });
  loop.AddTicker([&](EventLoop::TimePoint) -> StatusOr<EventLoop::TimePoint> {
    ++ticks;
    return EventLoop::kNever;
  });
  EXPECT_EQ(loop.Run().code(), StatusCode::kAborted);
  EXPECT_EQ(first_calls, 1);
  EXPECT_EQ(second_calls, 0);
  EXPECT_EQ(ticks, 0);
  // The second waker is still readable: the next Run serves it.
  EXPECT_TRUE(loop.Run().ok());
  EXPECT_EQ(second_calls, 1);
}

TEST_F(EventLoopTest, AWakerNotifiedFromAnotherThreadWakesALongWait) {
  Waker waker;
  EventLoop loop(milliseconds(60'000));
  loop.AddWaker(waker, [&] { loop.Exit(OkStatus()); });
  const auto start = SteadyClock::now();
  std::jthread notifier([&] { waker.Notify(); });
  EXPECT_TRUE(loop.Run().ok());
  EXPECT_LT(SteadyClock::now() - start, milliseconds(30'000));
}

TEST_F(EventLoopTest, PollFailureIsAStatus) {
  EventLoop loop;
  loop.AddSocket(pull_, [] {});
  ctx_.shutdown();  // polling a socket of a shut-down context fails with ETERM
  Status s = loop.Run();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("poll failed"), std::string::npos) << s;
}

}  // namespace
}  // namespace eddy
