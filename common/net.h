// Small ZeroMQ and OS helpers shared by every role: binding to ephemeral ports,
// a wake-up file descriptor for event loops, a node's description.
// Thread-safety: Waker::Notify may be called from any thread; the rest are
// used by the thread that owns the socket.
#ifndef EDDY_COMMON_NET_H_
#define EDDY_COMMON_NET_H_

#include <chrono>
#include <string>
#include <string_view>
#include <zmq.hpp>

#include "common/status.h"

namespace eddy {

using SteadyClock = std::chrono::steady_clock;

// Binds `socket` to tcp://host:port (port 0 = an ephemeral port chosen by the
// OS) and returns the endpoint actually bound, e.g. "tcp://127.0.0.1:41235".
StatusOr<std::string> BindTcp(zmq::socket_t& socket, std::string_view host, int port);

// Replaces a wildcard bind address in `endpoint` (0.0.0.0 or *) by this host's
// name, so that peers can connect to it.
std::string AdvertisedEndpoint(const std::string& endpoint);

// Connects, turning zmq exceptions into a Status.
Status Connect(zmq::socket_t& socket, const std::string& endpoint);

// Sets options every Eddy socket wants: no linger beyond `linger_ms`, unlimited
// high-water marks (flow control is by requests in flight), max message size.
void ConfigureSocket(zmq::socket_t& socket, int linger_ms, int64_t max_message_bytes);

// This host's name and process id, for node names in messages and logs.
std::string HostName();
int ProcessId();

// An eventfd that an event loop polls next to its sockets: Notify() from any
// thread wakes the loop; the loop calls Drain() when it is readable.
class Waker {
 public:
  Waker();
  ~Waker();
  Waker(const Waker&) = delete;
  Waker& operator=(const Waker&) = delete;
  void Notify();
  void Drain();
  // Waits until notified or `timeout` passes; drains and returns true if notified.
  bool WaitFor(std::chrono::milliseconds timeout);
  int fd() const { return fd_; }

 private:
  int fd_;
};

// Milliseconds until `deadline` from now, clamped to [0, cap_ms]: a poll timeout.
long PollTimeoutMs(SteadyClock::time_point deadline, long cap_ms);

}  // namespace eddy

#endif  // EDDY_COMMON_NET_H_
