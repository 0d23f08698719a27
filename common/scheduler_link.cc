#include "common/scheduler_link.h"

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
  while (true) {
    zmq::pollitem_t items[2] = {{socket_.handle(), 0, ZMQ_POLLIN, 0},
                                {nullptr, stop ? stop->fd() : -1, ZMQ_POLLIN, 0}};
    long timeout = PollTimeoutMs(deadline, 1000);
    try {
      zmq::poll(items, stop ? 2 : 1, std::chrono::milliseconds(timeout));
    } catch (const zmq::error_t& e) {
      return UnavailableError(std::string("poll failed: ") + e.what());
    }
    if (stop && (items[1].revents & ZMQ_POLLIN)) return CancelledError("stopped while registering");
    if (items[0].revents & ZMQ_POLLIN) {
      StatusOr<Message> msg = RecvMessage(socket_);
      if (!msg.ok())
        return msg.status().WithContext("bad answer from scheduler " + options_.scheduler_endpoint);
      if (msg->header.type() == proto::ABORT) {
        return AbortedError("scheduler refused registration: " + msg->header.status_message());
      }
      if (msg->header.type() != proto::CLUSTER_VIEW) continue;
      proto::ClusterView view;
      if (!view.ParseFromString(msg->header.payload())) {
        return InvalidArgumentError("scheduler sent an unparsable cluster view");
      }
      node_id_ = view.your_id();
      if (view.heartbeat_interval_ms() > 0)
        heartbeat_interval_ = std::chrono::milliseconds(view.heartbeat_interval_ms());
      if (view.node_timeout_ms() > 0)
        node_timeout_ = std::chrono::milliseconds(view.node_timeout_ms());
      last_heard_ = SteadyClock::now();
      next_heartbeat_ = last_heard_ + heartbeat_interval_;
      return view;
    }
    if (SteadyClock::now() >= deadline) {
      return DeadlineExceededError(
          "no cluster view from the scheduler at " + options_.scheduler_endpoint + " after " +
          std::to_string(options_.registration_timeout.count() / 1000) +
          " s: is it running and reachable (--scheduler), and are all other nodes started?");
    }
  }
}

Status SchedulerLink::Tick(SteadyClock::time_point now) {
  if (now - last_heard_ > node_timeout_) {
    return UnavailableError(
        "scheduler at " + options_.scheduler_endpoint + " stopped answering for " +
        std::to_string(
            std::chrono::duration_cast<std::chrono::milliseconds>(now - last_heard_).count()) +
        " ms");
  }
  if (now >= next_heartbeat_) {
    RETURN_IF_ERROR(Send(proto::HEARTBEAT));
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
