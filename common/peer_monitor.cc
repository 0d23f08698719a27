#include "common/peer_monitor.h"

#include <cstdint>
#include <cstring>

namespace eddy {

StatusOr<std::unique_ptr<PeerMonitor>> PeerMonitor::Start(zmq::context_t& context,
                                                          zmq::socket_t& watched) {
  // One inproc endpoint per watched socket.
  const std::string endpoint =
      "inproc://eddy-peer-monitor-" + std::to_string(reinterpret_cast<uintptr_t>(&watched));
  if (zmq_socket_monitor(watched.handle(), endpoint.c_str(), ZMQ_EVENT_DISCONNECTED) != 0) {
    return UnavailableError(std::string("socket monitor: ") + zmq_strerror(zmq_errno()));
  }
  try {
    zmq::socket_t events(context, zmq::socket_type::pair);
    events.set(zmq::sockopt::linger, 0);
    events.connect(endpoint);
    return std::unique_ptr<PeerMonitor>(new PeerMonitor(watched, std::move(events), endpoint));
  } catch (const zmq::error_t& e) {
    zmq_socket_monitor(watched.handle(), nullptr, 0);
    return UnavailableError(std::string("socket monitor: ") + e.what());
  }
}

PeerMonitor::PeerMonitor(zmq::socket_t& watched, zmq::socket_t events, std::string endpoint)
    : watched_(watched), events_(std::move(events)), endpoint_(std::move(endpoint)) {}

PeerMonitor::~PeerMonitor() { zmq_socket_monitor(watched_.handle(), nullptr, 0); }

std::optional<int> PeerMonitor::ReadClosed() {
  // An event is two frames: 6 bytes (uint16 event, uint32 value), then the address.
  zmq::message_t head, address;
  try {
    if (!events_.recv(head, zmq::recv_flags::dontwait)) return std::nullopt;
    if (head.more()) (void)events_.recv(address, zmq::recv_flags::none);
  } catch (const zmq::error_t&) {
    return std::nullopt;
  }
  if (head.size() < 6) return std::nullopt;
  uint16_t event = 0;
  uint32_t value = 0;
  std::memcpy(&event, head.data(), sizeof(event));
  std::memcpy(&value, static_cast<const char*>(head.data()) + 2, sizeof(value));
  if (event != ZMQ_EVENT_DISCONNECTED) return std::nullopt;
  return static_cast<int>(value);
}

}  // namespace eddy
