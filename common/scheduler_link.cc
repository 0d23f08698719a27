#include "common/scheduler_link.h"

#include <glog/logging.h>

#include <optional>
#include <utility>

#include "common/event_loop.h"

namespace eddy {

SchedulerLink::SchedulerLink(zmq::context_t& context, SchedulerLinkOptions options)
    : socket_(context, zmq::socket_type::dealer), options_(std::move(options)) {
  ConfigureSocket(socket_, /*linger_ms=*/1000, /*max_message_bytes=*/64 << 20);
  last_heard_ = next_heartbeat_ = SteadyClock::now();
}

StatusOr<proto::ClusterView> SchedulerLink::Register(const Waker* stop) {
  const ConnectionLabel label{
      options_.self.role() == proto::SERVER ? NodeRole::kServer : NodeRole::kWorker,
      options_.self.requested_rank(), NodeRole::kScheduler, -1, ConnectionPurpose::kControl};
  RETURN_IF_ERROR(ConnectVia(options_.transport, socket_, options_.scheduler_endpoint, label));
  Message reg{MakeHeader(proto::REGISTER), {}, {}};
  reg.header.set_sender(-1);
  reg.header.set_payload(options_.self.SerializeAsString());
  RETURN_IF_ERROR(SendMessage(socket_, reg));
  const auto deadline = SteadyClock::now() + options_.registration_timeout;
  std::optional<proto::ClusterView> view;
  EventLoop loop;
  // A stop wins over an answer that came at the same time.
  if (stop != nullptr) {
    loop.AddFd(stop->fd(), [&] { loop.Exit(CancelledError("stopped while registering")); });
  }
  loop.AddSocket(socket_, [&] {
    StatusOr<Message> msg = RecvMessage(socket_);
    if (!msg.ok()) {
      return loop.Exit(
          msg.status().WithContext("bad answer from scheduler " + options_.scheduler_endpoint));
    }
    if (msg->header.type() == proto::ABORT) {
      return loop.Exit(
          AbortedError("scheduler refused registration: " + msg->header.status_message()));
    }
    if (msg->header.type() != proto::CLUSTER_VIEW) return;
    view.emplace();
    if (!view->ParseFromString(msg->header.payload())) {
      return loop.Exit(InvalidArgumentError("scheduler sent an unparsable cluster view"));
    }
    loop.Exit(OkStatus());
  });
  loop.AddTicker([&](SteadyClock::time_point now) -> StatusOr<SteadyClock::time_point> {
    if (now < deadline) return deadline;
    return DeadlineExceededError(
        "no cluster view from the scheduler at " + options_.scheduler_endpoint + " after " +
        std::to_string(options_.registration_timeout.count() / 1000) +
        " s: is it running and reachable (--scheduler), and are all other nodes started?");
  });
  RETURN_IF_ERROR(loop.Run());
  node_id_ = view->your_id();
  if (view->heartbeat_interval_ms() > 0)
    heartbeat_interval_ = std::chrono::milliseconds(view->heartbeat_interval_ms());
  if (view->node_timeout_ms() > 0)
    node_timeout_ = std::chrono::milliseconds(view->node_timeout_ms());
  last_heard_ = SteadyClock::now();
  next_heartbeat_ = last_heard_ + heartbeat_interval_;
  return std::move(view).value();
}

Status SchedulerLink::Tick(SteadyClock::time_point now) {
  if (now - next_heartbeat_ > node_timeout_ / 2) {
    // This process was stalled (stopped, swapping, or its loop busy) long past
    // a heartbeat: the silence is its own. Speak first and give the scheduler
    // a full timeout to answer (it may have declared this node lost meanwhile;
    // it takes it back when it answers again).
    LOG(WARNING) << "this node was stalled for "
                 << std::chrono::duration_cast<std::chrono::milliseconds>(now - next_heartbeat_)
                        .count()
                 << " ms past a heartbeat; checking in with the scheduler";
    last_heard_ = now;
    next_heartbeat_ = now;
  }
  if (now - last_heard_ > node_timeout_) {
    return UnavailableError(
        "scheduler at " + options_.scheduler_endpoint + " stopped answering for " +
        std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(now - last_heard_).count()) +
        " ms");
  }
  if (now >= next_heartbeat_) {
    RETURN_IF_ERROR(
        Send(proto::HEARTBEAT, options_.heartbeat_payload ? options_.heartbeat_payload() : ""));
    next_heartbeat_ = now + heartbeat_interval_;
  }
  return OkStatus();
}

Status SchedulerLink::Send(proto::MsgType type, std::string payload, std::string table,
                           int64_t version) {
  Message m{MakeHeader(type), {}, {}};
  m.header.set_version(version);
  m.header.set_sender(node_id_);
  m.header.set_payload(std::move(payload));
  m.header.set_table(std::move(table));
  return SendMessage(socket_, m);
}

StatusOr<Message> SchedulerLink::Receive() {
  StatusOr<Message> msg = RecvMessage(socket_);
  if (msg.ok()) last_heard_ = SteadyClock::now();
  return msg;
}

}  // namespace eddy
