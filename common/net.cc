#include "common/net.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace eddy {

StatusOr<std::string> BindTcp(zmq::socket_t& socket, std::string_view host, int port) {
  std::string endpoint =
      "tcp://" + std::string(host) + ":" + (port == 0 ? std::string("*") : std::to_string(port));
  try {
    socket.bind(endpoint);
    return socket.get(zmq::sockopt::last_endpoint);
  } catch (const zmq::error_t& e) {
    return UnavailableError(
        "cannot bind " + endpoint + ": " + e.what() +
        (port != 0 ? " (is the port in use? pass port 0 for an ephemeral one)" : ""));
  }
}

std::string AdvertisedEndpoint(const std::string& endpoint) {
  for (std::string_view wildcard : {"0.0.0.0", "*"}) {
    std::string pattern = "tcp://" + std::string(wildcard) + ":";
    if (endpoint.rfind(pattern, 0) == 0)
      return "tcp://" + HostName() + ":" + endpoint.substr(pattern.size());
  }
  return endpoint;
}

Status Connect(zmq::socket_t& socket, const std::string& endpoint) {
  try {
    socket.connect(endpoint);
  } catch (const zmq::error_t& e) {
    return InvalidArgumentError("cannot connect to '" + endpoint + "': " + e.what() +
                                " (expected tcp://host:port)");
  }
  return OkStatus();
}

void ConfigureSocket(zmq::socket_t& socket, int linger_ms, int64_t max_message_bytes) {
  socket.set(zmq::sockopt::linger, linger_ms);
  socket.set(zmq::sockopt::sndhwm, 0);
  socket.set(zmq::sockopt::rcvhwm, 0);
  if (max_message_bytes > 0) socket.set(zmq::sockopt::maxmsgsize, max_message_bytes);
}

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "localhost";
  return buf;
}

int ProcessId() { return static_cast<int>(getpid()); }

Waker::Waker() : fd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) { PCHECK(fd_ >= 0) << "eventfd"; }

Waker::~Waker() { close(fd_); }

void Waker::Notify() {
  uint64_t one = 1;
  ssize_t n = write(fd_, &one, sizeof(one));
  (void)n;  // EAGAIN means the counter is already non-zero: the loop will wake anyway
}

void Waker::Drain() {
  uint64_t value;
  ssize_t n = read(fd_, &value, sizeof(value));
  (void)n;
}

bool Waker::WaitFor(std::chrono::milliseconds timeout) {
  pollfd p{fd_, POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, timeout.count())));
  if (n <= 0 || !(p.revents & POLLIN)) return false;
  Drain();
  return true;
}

long PollTimeoutMs(SteadyClock::time_point deadline, long cap_ms) {
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now()).count();
  if (ms < 0) return 0;
  return ms > cap_ms ? cap_ms : ms + 1;
}

}  // namespace eddy
