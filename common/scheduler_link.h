// SchedulerLink: a server's or worker's control connection to the scheduler —
// registration, heartbeats, liveness of the scheduler, control messages.
// Thread-safety: not thread-safe; owned and used by the node's event-loop thread.
#ifndef EDDY_COMMON_SCHEDULER_LINK_H_
#define EDDY_COMMON_SCHEDULER_LINK_H_

#include <chrono>
#include <functional>
#include <string>
#include <zmq.hpp>

#include "common/message.h"
#include "common/net.h"
#include "common/proto/eddy.pb.h"
#include "common/status.h"
#include "common/transport.h"

namespace eddy {

struct SchedulerLinkOptions {
  std::string scheduler_endpoint;  // tcp://host:port
  proto::NodeInfo self;
  std::chrono::milliseconds registration_timeout{120'000};
  // The payload of each heartbeat (e.g. a serialized proto::ServerReport);
  // called on the link's thread. Empty: none.
  std::function<std::string()> heartbeat_payload;
  // Opens the connection to the scheduler; nullptr: a direct connect. Not
  // owned; must outlive the link.
  Transport* transport = nullptr;
};

class SchedulerLink {
 public:
  // `context` must outlive the link.
  SchedulerLink(zmq::context_t& context, SchedulerLinkOptions options);
  SchedulerLink(const SchedulerLink&) = delete;
  SchedulerLink& operator=(const SchedulerLink&) = delete;

  // Connects, sends REGISTER and blocks until the scheduler answers with the
  // cluster view (returned), refuses (error with its reason), the timeout passes
  // (DeadlineExceeded) or `stop` becomes readable (Cancelled).
  StatusOr<proto::ClusterView> Register(const Waker* stop);

  zmq::socket_t& socket() { return socket_; }
  int node_id() const { return node_id_; }

  // Sends a heartbeat when one is due. Returns Unavailable naming the scheduler
  // when nothing has come from it for node_timeout_ms.
  Status Tick(SteadyClock::time_point now);
  // The time Tick() next has work to do.
  SteadyClock::time_point next_tick() const { return next_heartbeat_; }

  // Sends a control message with an optional payload, `table` (used as a
  // barrier name) and model `version`.
  Status Send(proto::MsgType type, std::string payload = {}, std::string table = {},
              int64_t version = 0);

  // Receives one message (call when socket() is readable); notes the scheduler alive.
  StatusOr<Message> Receive();

 private:
  zmq::socket_t socket_;
  SchedulerLinkOptions options_;
  int node_id_ = -1;
  std::chrono::milliseconds heartbeat_interval_{1000};
  std::chrono::milliseconds node_timeout_{10'000};
  SteadyClock::time_point last_heard_;
  SteadyClock::time_point next_heartbeat_;
};

}  // namespace eddy

#endif  // EDDY_COMMON_SCHEDULER_LINK_H_
