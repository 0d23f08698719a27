// PeerMonitor: tells which TCP connections of a socket closed, from ZeroMQ's
// socket monitor (ZMQ_EVENT_DISCONNECTED carries the connection's file
// descriptor; RecvMessage's source_fd says which peer a descriptor belongs
// to). A process killed with SIGKILL closes its connections at once, so its
// peers learn of it without waiting for a heartbeat timeout.
// Thread-safety: used by the thread that owns the watched socket.
#ifndef EDDY_COMMON_PEER_MONITOR_H_
#define EDDY_COMMON_PEER_MONITOR_H_

#include <memory>
#include <optional>
#include <string>
#include <zmq.hpp>

#include "common/status.h"

namespace eddy {

class PeerMonitor {
 public:
  // Starts monitoring `watched` (which must outlive the monitor) for closed
  // connections. Errors: Unavailable when ZeroMQ refuses.
  static StatusOr<std::unique_ptr<PeerMonitor>> Start(zmq::context_t& context,
                                                      zmq::socket_t& watched);
  ~PeerMonitor();
  PeerMonitor(const PeerMonitor&) = delete;
  PeerMonitor& operator=(const PeerMonitor&) = delete;

  // Readable (for an EventLoop) when an event is waiting.
  zmq::socket_t& socket() { return events_; }
  // Reads one waiting event: the descriptor of a connection that closed, or
  // nullopt for anything else (or nothing waiting).
  std::optional<int> ReadClosed();

 private:
  PeerMonitor(zmq::socket_t& watched, zmq::socket_t events, std::string endpoint);
  zmq::socket_t& watched_;
  zmq::socket_t events_;
  const std::string endpoint_;
};

}  // namespace eddy

#endif  // EDDY_COMMON_PEER_MONITOR_H_
