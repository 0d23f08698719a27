// The Client's I/O thread: sends queued requests, matches server replies to
// their operations, follows the scheduler's control messages (barriers,
// snapshots, shutdown, abort) and expires requests nobody answered.
#include <algorithm>
#include <cstring>

#include "common/event_loop.h"
#include "common/scheduler_link.h"
#include "worker/client.h"

namespace eddy::worker {

void Client::SendQueued() {
  std::vector<Part> batch;
  std::optional<std::string> metrics;
  {
    MutexLock lock(&queue_mu_);
    batch.swap(queue_);
    metrics.swap(metrics_);
    if (!health_.ok()) metrics.reset();
  }
  // Metrics go first: a report made before Finish() arrives before WORKER_DONE,
  // which may end the job.
  if (metrics) {
    Status s = link_->Send(proto::METRICS, std::move(*metrics));
    if (!s.ok()) VLOG(1) << "worker " << worker_id_ << ": metrics not sent: " << s;
  }
  const auto deadline = SteadyClock::now() + options_.request_timeout;
  for (Part& part : batch) {
    if (part.server == kControl) {
      const proto::MsgType type = part.message.header.type();
      if (type == proto::BARRIER) {
        barrier_ops_.push_back(part.op);
      } else if (type == proto::WORKER_DONE) {
        finish_op_ = part.op;
      }
      part.message.header.set_sender(worker_id_);
      Status s = SendMessage(link_->socket(), part.message);
      if (!s.ok() || type == proto::ABORT)
        part.op->Complete(s.WithContext("sending to the scheduler"));
      continue;
    }
    if (part.op->done()) continue;  // another part already failed
    part.message.header.set_epoch(epoch_);
    const uint64_t id = part.message.header.request_id();
    const proto::MsgType type = part.message.header.type();
    pending_[id] = Pending{part.op, part.part_index, part.server, deadline};
    Status s = SendMessage(servers_[part.server], part.message);
    if (!s.ok()) {
      pending_.erase(id);
      part.op->Complete(s.WithContext("sending to " + ServerName(part.server)));
    }
    if (type == proto::CLOCK) {
      // A clock boundary: an owed marker goes right behind it.
      sent_clock_ = part.message.header.clock();
      sent_rows_ = part.message.header.offset();
      // The finished clock carries no partition positions: the last ones stand.
      if (part.message.header.clock() != kFinishedClock) {
        sent_state_ = part.message.header.stream_state();
      }
      pushed_since_clock_ = false;
      if (cut_version_ != 0) SendCut(part.server);
    } else if (type == proto::PUSH || type == proto::PUSH_DENSE || type == proto::PUSH_PULL) {
      pushed_since_clock_ = true;
    }
  }
}

void Client::SendCut(uint32_t server) {
  if (cut_sent_[server]) return;
  Message m{MakeHeader(proto::CUT, next_request_id_.fetch_add(1)), {}, {}};
  m.header.set_epoch(epoch_);
  m.header.set_sender(worker_id_);
  m.header.set_version(static_cast<int64_t>(cut_version_));
  m.header.set_clock(sent_clock_);
  if (sent_clock_ == 0) {
    // No clock yet: the worker is where it started.
    MutexLock lock(&start_mu_);
    m.header.set_offset(start_rows_);
    if (!start_state_.empty()) m.header.set_stream_state(start_state_);
  } else {
    m.header.set_offset(sent_rows_);
    if (!sent_state_.empty()) m.header.set_stream_state(sent_state_);
  }
  Status s = SendMessage(servers_[server], m);
  if (!s.ok()) LOG(WARNING) << "worker " << worker_id_ << ": marker not sent: " << s;
  cut_sent_[server] = true;
  if (std::all_of(cut_sent_.begin(), cut_sent_.end(), [](bool b) { return b; })) {
    cut_version_ = 0;
  }
}

void Client::SendCutToAll() {
  for (uint32_t s = 0; s < servers_.size() && cut_version_ != 0; ++s) SendCut(s);
}

void Client::OnReply(uint32_t server, Message reply) {
  auto it = pending_.find(reply.header.request_id());
  if (it == pending_.end()) {
    VLOG(1) << "late or unknown reply " << reply.header.request_id() << " from "
            << ServerName(server);
    return;
  }
  Pending pending = std::move(it->second);
  pending_.erase(it);
  Op& op = *pending.op;
  if (op.done()) return;
  Status status = StatusFromHeader(reply.header);
  if (!status.ok()) {
    op.Complete(status.WithContext(ServerName(server)));
    return;
  }
  Status frames = ValidateFrames(reply);
  const uint64_t expected = op.expected_values_[pending.part_index];
  if (frames.ok() && reply.header.value_count() != expected) {
    frames = DataLossError("expected " + std::to_string(expected) + " values, got " +
                           std::to_string(reply.header.value_count()));
  }
  if (!frames.ok()) {
    op.Complete(frames.WithContext("malformed reply from " + ServerName(server)));
    return;
  }
  // Servers put the slowest worker's clock in pull replies and the tensor version
  // in dense replies (0 elsewhere).
  const int64_t clock = reply.header.clock();
  if (op.slowest_clock_ < 0 || clock < op.slowest_clock_) op.slowest_clock_ = clock;
  op.version_ = std::max<int64_t>(op.version_, reply.header.version());
  if (expected > 0) {
    Buffer values = reply.values.Aligned(alignof(float));
    const float* src = values.As<float>().data();
    if (!op.scatter_) {
      op.result_ = std::move(values);
    } else if (!op.positions_.empty()) {
      float* dst = op.result_.MutableAs<float>().data();
      const size_t dim = op.dim_;
      const auto& pos = op.positions_[pending.part_index];
      for (size_t j = 0; j < pos.size(); ++j)
        std::memcpy(dst + pos[j] * dim, src + j * dim, dim * sizeof(float));
    } else {
      float* dst = op.result_.MutableAs<float>().data() + op.offsets_[pending.part_index];
      std::memcpy(dst, src, expected * sizeof(float));
    }
  }
  if (--op.remaining_parts_ == 0) op.Complete(OkStatus());
}

void Client::OnControl(Message msg) {
  switch (msg.header.type()) {
    case proto::BARRIER_RELEASE: {
      std::vector<OpPtr> released;
      released.swap(barrier_ops_);
      for (auto& op : released) op->Complete(OkStatus());
      break;
    }
    case proto::SNAPSHOT: {
      const uint64_t v = static_cast<uint64_t>(std::max<int64_t>(0, msg.header.version()));
      if (v == 0) break;
      cut_version_ = v;
      cut_sent_.assign(servers_.size(), false);
      // Between batches (nothing pushed since the last clock) the marker can go now.
      if (!pushed_since_clock_) SendCutToAll();
      break;
    }
    case proto::RECOVER: {
      proto::RecoveryRequest request;
      request.ParseFromString(msg.header.payload());
      LOG(WARNING) << "worker " << worker_id_ << ": recovery (epoch " << request.epoch()
                   << "): " << request.why() << "; rolling back to version "
                   << request.version();
      recovering_.store(true);
      cut_version_ = 0;
      FailAll(AbortedError("recovering: " + request.why()));
      break;
    }
    case proto::ADOPT: {
      proto::RecoveryRequest request;
      if (!request.ParseFromString(msg.header.payload()) || request.adopt_worker() < 0) {
        LOG(WARNING) << "worker " << worker_id_ << ": ignored a malformed ADOPT";
        break;
      }
      if (!options_.on_adopt) {
        LOG(WARNING) << "worker " << worker_id_ << ": cannot take over worker "
                     << request.adopt_worker() << " (this program runs one worker)";
        break;
      }
      LOG(WARNING) << "worker " << worker_id_ << ": taking over the share of lost worker "
                   << request.adopt_worker() << " (" << request.why() << ")";
      options_.on_adopt(request.adopt_worker());
      break;
    }
    case proto::RESTART: {
      proto::ClusterView view;
      if (!view.ParseFromString(msg.header.payload())) {
        LOG(WARNING) << "worker " << worker_id_ << ": ignored a malformed RESTART";
        break;
      }
      // A replacement server may listen elsewhere.
      for (int s = 0; s < view.servers_size() && s < static_cast<int>(servers_.size()); ++s) {
        const std::string& endpoint = view.servers(s).info().endpoint();
        if (endpoint == endpoints_[s]) continue;
        try {
          servers_[s].disconnect(endpoints_[s]);
        } catch (const zmq::error_t& e) {
          VLOG(1) << "disconnect from " << endpoints_[s] << ": " << e.what();
        }
        const ConnectionLabel label{NodeRole::kWorker, worker_id_, NodeRole::kServer, s,
                                    ConnectionPurpose::kData};
        Status connected = ConnectVia(options_.transport, servers_[s], endpoint, label);
        if (!connected.ok()) LOG(ERROR) << "worker " << worker_id_ << ": " << connected;
        endpoints_[s] = endpoint;
      }
      epoch_ = view.epoch();
      clock_.store(0);
      pushed_since_clock_ = false;
      sent_clock_ = 0;
      sent_rows_ = 0;
      sent_state_.clear();
      cut_version_ = 0;
      {
        MutexLock lock(&restart_mu_);
        restart_view_ = std::move(view);
      }
      restart_cv_.NotifyAll();
      break;
    }
    case proto::SHUTDOWN: {
      if (finish_op_) finish_op_->Complete(OkStatus());
      FailAll(CancelledError("the scheduler ended the job"));
      MutexLock lock(&queue_mu_);
      if (health_.ok()) health_ = CancelledError("the job has ended");
      break;
    }
    case proto::ABORT: {
      Status s = AbortedError("job aborted by the scheduler: " + msg.header.status_message());
      LOG(ERROR) << "worker " << worker_id_ << ": " << s.message();
      {
        MutexLock lock(&queue_mu_);
        health_ = s;
      }
      FailAll(s);
      break;
    }
    default:
      break;
  }
}

void Client::FailAll(const Status& status) {
  std::vector<Part> queued;
  {
    MutexLock lock(&queue_mu_);
    queued.swap(queue_);
  }
  for (Part& p : queued) p.op->Complete(status);
  auto pending = std::move(pending_);
  pending_.clear();
  for (auto& [id, p] : pending) p.op->Complete(status);
  for (auto& op : barrier_ops_) op->Complete(status);
  barrier_ops_.clear();
  if (finish_op_) finish_op_->Complete(status);
}

void Client::IoLoop() {
  // Servers and the scheduler are drained each round: replies are small and
  // every one completes work a caller waits for.
  EventLoop loop(std::chrono::milliseconds(200));
  loop.AddWaker(waker_, [&] {
    bool stopping;
    {
      MutexLock lock(&queue_mu_);
      stopping = stopping_;
    }
    if (stopping) return loop.Exit(CancelledError("client destroyed"));
    SendQueued();
  });
  for (uint32_t s = 0; s < servers_.size(); ++s) {
    loop.AddSocket(
        servers_[s],
        [this, s] {
          StatusOr<Message> reply = RecvMessage(servers_[s]);
          if (!reply.ok()) {
            LOG(WARNING) << "dropped an unparsable reply from " << ServerName(s) << ": "
                         << reply.status();
            return;
          }
          OnReply(s, std::move(reply).value());
        },
        EventLoop::kUnlimited);
  }
  loop.AddSocket(
      link_->socket(),
      [this] {
        StatusOr<Message> msg = link_->Receive();
        if (msg.ok()) OnControl(std::move(msg).value());
      },
      EventLoop::kUnlimited);
  auto next_timeout_check = SteadyClock::now();
  loop.AddTicker([&](SteadyClock::time_point now) -> StatusOr<SteadyClock::time_point> {
    CheckScheduler(now);
    if (now >= next_timeout_check) {
      next_timeout_check = now + std::chrono::milliseconds(100);
      ExpireRequests(now);
    }
    return link_->next_tick();
  });
  // Ends when the client is destroyed (Cancelled) or polling fails.
  FailAll(loop.Run());
}

void Client::CheckScheduler(SteadyClock::time_point now) {
  {
    MutexLock lock(&queue_mu_);
    if (!health_.ok()) return;  // the job has ended
  }
  Status alive = link_->Tick(now);
  if (alive.ok()) return;
  LOG(ERROR) << "worker " << worker_id_ << ": " << alive.message();
  {
    MutexLock lock(&queue_mu_);
    health_ = alive;
  }
  FailAll(alive);
}

void Client::ExpireRequests(SteadyClock::time_point now) {
  std::vector<uint64_t> expired;
  for (auto& [id, p] : pending_) {
    if (now >= p.deadline) expired.push_back(id);
  }
  for (uint64_t id : expired) {
    Pending p = std::move(pending_[id]);
    pending_.erase(id);
    p.op->Complete(DeadlineExceededError(ServerName(p.server) + " did not answer request " +
                                         std::to_string(id) + " within " +
                                         std::to_string(options_.request_timeout.count()) + " ms"));
  }
}

}  // namespace eddy::worker
