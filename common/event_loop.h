// EventLoop: the one poll loop of every Eddy node. ZeroMQ sockets and file
// descriptors (Wakers) are registered with handlers; tickers say when they
// next have work; a handler or ticker ends the loop with a Status.
// Thread-safety: thread-compatible. Register, Run and Exit on the thread that
// owns the registered sockets; other threads wake the loop through a Waker.
#ifndef EDDY_COMMON_EVENT_LOOP_H_
#define EDDY_COMMON_EVENT_LOOP_H_

#include <chrono>
#include <functional>
#include <limits>
#include <optional>
#include <vector>
#include <zmq.hpp>

#include "common/net.h"
#include "common/status.h"

namespace eddy {

class EventLoop {
 public:
  using TimePoint = SteadyClock::time_point;
  // Called when its socket or descriptor is readable.
  using Handler = std::function<void()>;
  // Called after every round (every wake-up) with the current time; returns
  // the next time it has work (kNever: none), or an error that ends the loop.
  using Ticker = std::function<StatusOr<TimePoint>(TimePoint now)>;

  static constexpr int kUnlimited = std::numeric_limits<int>::max();
  static constexpr TimePoint kNever = TimePoint::max();

  // `max_wait`: the longest a round waits in poll, whatever the tickers say.
  explicit EventLoop(std::chrono::milliseconds max_wait = std::chrono::milliseconds(1000));
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Registers a borrowed socket (it must outlive the loop). While it is
  // readable, `on_readable` is called up to `max_per_round` times per round
  // before the loop serves the other sources again; each call must receive
  // one message (all its frames).
  void AddSocket(zmq::socket_t& socket, Handler on_readable, int max_per_round = 1);
  // Registers a file descriptor: `on_readable` is called once per round while
  // it is readable and must consume what made it so.
  void AddFd(int fd, Handler on_readable);
  // Registers a Waker: drained, then `on_wake` is called.
  void AddWaker(Waker& waker, Handler on_wake);
  // Registers a ticker; the first round does not wait, so it runs at once.
  void AddTicker(Ticker ticker);

  // Serves rounds in registration order (sources, then tickers) until Exit()
  // or a ticker error, and returns that status. Unavailable if polling fails.
  // May be called again afterwards.
  Status Run();
  // Ends Run() with `status` (OK included) once the current handler returns;
  // the handlers not yet called in this round are skipped. The first call wins.
  void Exit(Status status);
  bool exiting() const { return exit_.has_value(); }

 private:
  struct Source {
    zmq::socket_t* socket;  // null for a descriptor
    int fd;
    Handler handler;
    int max_per_round;
  };

  // Calls a readable source's handler up to its cap. Errors: Unavailable.
  Status Serve(Source& source);

  const std::chrono::milliseconds max_wait_;
  std::vector<Source> sources_;
  std::vector<Ticker> tickers_;
  std::vector<zmq::pollitem_t> items_;
  std::optional<Status> exit_;
};

}  // namespace eddy

#endif  // EDDY_COMMON_EVENT_LOOP_H_
