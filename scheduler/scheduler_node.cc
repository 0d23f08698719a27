#include "scheduler/scheduler_node.h"

#include <algorithm>

#include "common/event_loop.h"
#include "common/message.h"
#include "common/table_config.h"
#include "model_store/version_dir.h"
#include "model_store/version_service.h"
#include "model_store/version_writer.h"

namespace eddy::scheduler {
namespace {

// Dropped METRICS messages are logged up to this many times per kind, then only counted.
constexpr uint64_t kLoggedMetricsDrops = 5;

}  // namespace

std::string SchedulerNode::Node::Name() const {
  std::string s = role == proto::SERVER ? "server " : "worker ";
  s += std::to_string(id) + " (" + info.host() + ":" + std::to_string(info.pid());
  if (!info.endpoint().empty()) s += ", " + info.endpoint();
  return s + ")";
}

SchedulerNode::SchedulerNode(zmq::context_t& context, SchedulerOptions options)
    : context_(context),
      options_(std::move(options)),
      recovery_(options_.num_servers,
                options_.model_dir.empty() ? std::chrono::milliseconds(0)
                                           : options_.recovery_timeout,
                // Survivors adopt a lost worker's share when no replacement
                // came within 5 s (or half the recovery timeout).
                options_.tolerate_worker_failures
                    ? std::min<std::chrono::milliseconds>(std::chrono::seconds(5),
                                                          options_.recovery_timeout / 2)
                    : std::chrono::milliseconds(0)) {
  MutexLock lock(&metrics_mu_);
  metrics_.assign(std::max(options_.num_workers, 0), std::string());
}

SchedulerNode::~SchedulerNode() {
  if (version_service_) version_service_->Stop();
}

std::string SchedulerNode::version_service_endpoint() const {
  MutexLock lock(&service_mu_);
  return service_endpoint_;
}

void SchedulerNode::RequestSnapshot() {
  snapshot_requested_.store(true);
  stop_waker_.Notify();
}

void SchedulerNode::Stop() {
  stop_.store(true);
  stop_waker_.Notify();
}

std::vector<std::string> SchedulerNode::worker_reports() const {
  MutexLock lock(&reports_mu_);
  return reports_;
}

std::vector<std::string> SchedulerNode::latest_metrics() const {
  MutexLock lock(&metrics_mu_);
  return metrics_;
}

std::vector<proto::ServerReport> SchedulerNode::server_reports() const {
  std::vector<proto::ServerReport> out;
  for (const Node& n : nodes_) {
    if (n.role != proto::SERVER || n.id < 0) continue;
    if (out.size() <= static_cast<size_t>(n.id)) out.resize(n.id + 1);
    out[n.id] = n.server_report;
  }
  return out;
}

SchedulerStats SchedulerNode::stats() const {
  MutexLock lock(&metrics_mu_);
  return stats_;
}

StatusOr<std::string> SchedulerNode::Bind() {
  RETURN_IF_ERROR(ValidateSchedulerOptions(options_));
  socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::router);
  ConfigureSocket(*socket_, /*linger_ms=*/2000, /*max_message_bytes=*/64 << 20);
  ASSIGN_OR_RETURN(std::string bound, BindTcp(*socket_, options_.bind_host, options_.port));
  endpoint_ = AdvertisedEndpoint(bound);
  if (!options_.model_dir.empty()) {
    auto versions = model_store::ListVersions(options_.model_dir);
    if (!versions.ok() && versions.status().code() != StatusCode::kNotFound) {
      return versions.status().WithContext("--model_dir");
    }
    const uint64_t first = versions.ok() && !versions->empty() ? versions->back() + 1 : 1;
    VersionPolicy policy;
    policy.num_servers = options_.num_servers;
    policy.interval = options_.snapshot_interval;
    policy.every_rows = options_.snapshot_every_rows;
    policy.at_end = options_.snapshot_at_end;
    policy.full_every = options_.full_every;
    policy.keep_full_versions = options_.keep_full_versions;
    policy.evict_after_versions = options_.evict_after_versions;
    policy.timeout = options_.snapshot_timeout;
    policy.test_fail_after_bytes = options_.test_fail_after_bytes;
    versions_ =
        std::make_unique<VersionCoordinator>(policy, first, static_cast<VersionSink*>(this));
  }
  return endpoint_;
}

SchedulerNode::Node* SchedulerNode::FindNode(const std::string& routing_id) {
  for (Node& n : nodes_) {
    if (n.routing_id == routing_id) return &n;
  }
  return nullptr;
}

void SchedulerNode::SendTo(const std::string& routing_id, proto::MsgType type,
                           const std::string& message) {
  Message m{MakeHeader(type), {}, {}};
  m.header.set_status_message(message);
  SendMessage(*socket_, m, routing_id, /*dont_wait=*/true).IgnoreError();
}

void SchedulerNode::Broadcast(proto::MsgType type, const std::string& message) {
  for (const Node& n : nodes_) {
    if (!n.lost) SendTo(n.routing_id, type, message);
  }
}

Status SchedulerNode::EndJob(SteadyClock::time_point started) {
  Broadcast(proto::SHUTDOWN, "job finished");
  ReportProgress(SteadyClock::now(), /*final=*/true);
  LOG(INFO) << "scheduler: every live worker finished; job done in "
            << FormatSeconds(SteadyClock::now() - started);
  return OkStatus();
}

void SchedulerNode::OnMetrics(const Node* node, proto::Header& header) {
  const size_t size = header.payload().size();
  std::string dropped;  // why, when the payload is not kept
  uint64_t count = 0;
  {
    MutexLock lock(&metrics_mu_);
    if (node == nullptr || node->role != proto::WORKER || node->lost ||
        node->id >= static_cast<int>(metrics_.size())) {
      count = ++stats_.metrics_ignored;
      dropped = node == nullptr ? "an unregistered sender (claiming node " +
                                      std::to_string(header.sender()) + ")"
                                : node->Name();
      dropped = "ignored METRICS from " + dropped + ": only registered, live workers report";
    } else if (size > options_.max_metrics_bytes) {
      count = ++stats_.metrics_oversized;
      dropped = "dropped METRICS of " + std::to_string(size) + " bytes from " + node->Name() +
                " (limit " + std::to_string(options_.max_metrics_bytes) + " bytes)";
    } else {
      metrics_[node->id] = std::move(*header.mutable_payload());
      ++stats_.metrics_received;
      return;
    }
  }
  if (count <= kLoggedMetricsDrops) {
    LOG(WARNING) << "scheduler: " << dropped
                 << (count == kLoggedMetricsDrops ? "; further ones are only counted" : "");
  }
}

void SchedulerNode::ReportProgress(SteadyClock::time_point now, bool final) {
  if (!options_.on_progress || !cluster_up_) return;
  if (!final) {
    if (now < next_progress_) return;
    next_progress_ = now + options_.progress_interval;
  }
  options_.on_progress(ProgressInputs{latest_metrics(), server_reports()}, final);
}

bool SchedulerNode::ReadyToEnd() {
  if (!cluster_up_ || recovery_.active() || !AllLiveWorkersDone()) return false;
  return !versions_ || versions_->ReadyToEnd();
}

int SchedulerNode::LiveWorkers() const {
  int live = 0;
  for (const Node& n : nodes_) live += n.role == proto::WORKER && !n.lost;
  return live;
}

bool SchedulerNode::AllLiveWorkersDone() const {
  for (const Node& n : nodes_) {
    if (n.role == proto::WORKER && !n.lost && !n.done) return false;
  }
  return true;
}

void SchedulerNode::ReleaseCompleteBarriers() {
  for (auto it = barriers_.begin(); it != barriers_.end();) {
    std::vector<std::string>& waiting = it->second;
    std::erase_if(waiting, [&](const std::string& r) {
      const Node* n = FindNode(r);
      return n == nullptr || n->lost;
    });
    if (static_cast<int>(waiting.size()) >= LiveWorkers()) {
      for (const std::string& r : waiting) SendTo(r, proto::BARRIER_RELEASE);
      it = barriers_.erase(it);
    } else {
      ++it;
    }
  }
}

std::optional<Status> SchedulerNode::OnRegister(const std::string& routing_id,
                                                const proto::Header& header) {
  proto::NodeInfo info;
  if (!info.ParseFromString(header.payload()) ||
      (info.role() != proto::SERVER && info.role() != proto::WORKER)) {
    LOG(WARNING) << "scheduler: ignored a malformed registration";
    return std::nullopt;
  }
  if (FindNode(routing_id) != nullptr) return std::nullopt;  // duplicate
  const bool server = info.role() == proto::SERVER;
  if (cluster_up_ && recovery_.enabled()) {
    // A replacement: it takes a lost node's place now, or once the loss of
    // the node it replaces is noticed (a supervisor may restart a process
    // faster than the heartbeat timeout).
    std::optional<Status> end;
    if (!AdmitReplacement(routing_id, info, &end)) {
      LOG(INFO) << "scheduler: a " << (server ? "server" : "worker") << " from " << info.host()
                << ":" << info.pid() << " waits to replace the next lost "
                << (server ? "server" : "worker");
      waiting_nodes_.emplace_back(routing_id, info);
    }
    return end;
  }
  const int expected = server ? options_.num_servers : options_.num_workers;
  std::vector<bool> taken(expected, false);
  int count = 0;
  for (const Node& n : nodes_) {
    if (n.role == info.role()) {
      taken[n.id] = true;
      ++count;
    }
  }
  if (cluster_up_ || count >= expected) {
    std::string why = std::string("the job already has its ") + std::to_string(expected) +
                      (server ? " server(s)" : " worker(s)") +
                      "; check --num_servers / --num_workers";
    LOG(WARNING) << "scheduler: refused " << (server ? "a server" : "a worker") << " from "
                 << info.host() << ":" << info.pid() << ": " << why;
    SendTo(routing_id, proto::ABORT, why);
    return std::nullopt;
  }
  Node node;
  node.role = info.role();
  node.info = info;
  node.routing_id = routing_id;
  node.last_seen = SteadyClock::now();
  int want = info.requested_rank();
  if (want >= 0 && want < expected && !taken[want]) {
    node.id = want;
  } else {
    node.id = static_cast<int>(std::find(taken.begin(), taken.end(), false) - taken.begin());
  }
  LOG(INFO) << "scheduler: " << node.Name() << " registered";
  nodes_.push_back(std::move(node));
  if (static_cast<int>(nodes_.size()) == options_.num_servers + options_.num_workers) SendViews();
  return std::nullopt;
}

proto::ClusterView SchedulerNode::BaseView() const {
  proto::ClusterView view;
  std::vector<const Node*> servers, workers;
  for (const Node& n : nodes_) (n.role == proto::SERVER ? servers : workers).push_back(&n);
  auto by_id = [](const Node* a, const Node* b) { return a->id < b->id; };
  std::sort(servers.begin(), servers.end(), by_id);
  std::sort(workers.begin(), workers.end(), by_id);
  for (const Node* n : servers) {
    auto* e = view.add_servers();
    e->set_id(n->id);
    *e->mutable_info() = n->info;
  }
  for (const Node* n : workers) {
    auto* e = view.add_workers();
    e->set_id(n->id);
    *e->mutable_info() = n->info;
  }
  for (const auto& t : options_.tables) *view.add_tables() = t;
  view.set_heartbeat_interval_ms(static_cast<int32_t>(options_.heartbeat_interval.count()));
  view.set_node_timeout_ms(static_cast<int32_t>(options_.node_timeout.count()));
  view.set_server_shards(options_.server_shards);
  view.set_max_request_keys(options_.max_request_keys);
  view.set_staleness(options_.staleness);
  view.set_aggregate(options_.aggregate);
  view.set_epoch(recovery_.epoch());
  return view;
}

void SchedulerNode::SendView(Node& node, proto::ClusterView view, proto::MsgType type) {
  view.set_your_id(node.id);
  view.clear_stream_partitions();
  if (node.role == proto::WORKER) {
    for (int32_t p = node.id; p < options_.stream_partitions; p += options_.num_workers) {
      view.add_stream_partitions(p);
    }
  }
  Message m{MakeHeader(type), {}, {}};
  m.header.set_payload(view.SerializeAsString());
  SendMessage(*socket_, m, node.routing_id, /*dont_wait=*/true).IgnoreError();
  node.last_seen = SteadyClock::now();
}

void SchedulerNode::SendViews() {
  proto::ClusterView view = BaseView();
  if (options_.resume_version > 0) {
    view.set_resume_root(options_.resume_root);
    view.set_resume_version(options_.resume_version);
    for (const auto& p : options_.resume_positions) *view.add_resume_positions() = p;
  }
  const auto now = SteadyClock::now();
  if (versions_) versions_->Start();
  for (Node& n : nodes_) SendView(n, view, proto::CLUSTER_VIEW);
  cluster_up_ = true;
  if (options_.on_progress) next_progress_ = now + options_.progress_interval;
  {
    MutexLock lock(&reports_mu_);
    reports_.assign(options_.num_workers, std::string());
  }
  LOG(INFO) << "scheduler: cluster up with " << options_.num_servers << " server(s) and "
            << options_.num_workers << " worker(s)";
}

Status SchedulerNode::StartVersionService() {
  if (options_.model_dir.empty() || options_.serve_port < 0 || version_service_) return OkStatus();
  model_store::VersionServiceOptions vo;
  vo.root = options_.model_dir;
  vo.bind_host = options_.bind_host;
  vo.port = options_.serve_port;
  version_service_ = std::make_unique<model_store::VersionService>(context_, vo);
  StatusOr<std::string> bound = version_service_->Bind();
  if (!bound.ok()) return bound.status().WithContext("--serve_port");
  const std::string endpoint = *bound;
  {
    MutexLock lock(&service_mu_);
    service_endpoint_ = endpoint;
  }
  LOG(INFO) << "scheduler: serving model versions to replicas at " << endpoint
            << " (eddy_serve --scheduler=" << endpoint << ")";
  version_service_thread_ = std::jthread([this] {
    Status s = version_service_->Run();
    if (!s.ok() && s.code() != StatusCode::kCancelled) LOG(ERROR) << "version service: " << s;
  });
  return OkStatus();
}

Status SchedulerNode::Run() {
  if (!socket_) RETURN_IF_ERROR(Bind().status());
  RETURN_IF_ERROR(StartVersionService());
  const auto started = SteadyClock::now();
  const auto registration_deadline = started + options_.registration_timeout;
  auto next_check = started + options_.heartbeat_interval;
  EventLoop loop;
  // Control messages are small: drain them all before looking at the clock.
  loop.AddSocket(
      *socket_,
      [&] {
        if (std::optional<Status> end = ReceiveOne(started)) loop.Exit(*end);
      },
      EventLoop::kUnlimited);
  loop.AddWaker(stop_waker_, [] {});
  // A node whose process died closes its connection at once: a node with no
  // message since its connection closed is lost after a short grace (a live
  // node reconnects and sends its next heartbeat within it), long before the
  // heartbeat timeout.
  StatusOr<std::unique_ptr<PeerMonitor>> monitor = PeerMonitor::Start(context_, *socket_);
  if (monitor.ok()) {
    monitor_ = std::move(monitor).value();
    loop.AddSocket(
        monitor_->socket(),
        [this] {
          std::optional<int> fd = monitor_->ReadClosed();
          if (!fd) return;
          for (Node& n : nodes_) {
            if (n.fd == *fd && !n.lost && !n.closed_at) n.closed_at = SteadyClock::now();
          }
        },
        EventLoop::kUnlimited);
  } else {
    LOG(WARNING) << "scheduler: " << monitor.status()
                 << "; lost nodes are noticed by the heartbeat timeout only";
  }
  loop.AddTicker([&](SteadyClock::time_point) -> StatusOr<SteadyClock::time_point> {
    if (stop_.load()) {
      Broadcast(proto::ABORT, "scheduler stopped");
      return CancelledError("scheduler stopped");
    }
    const auto now = SteadyClock::now();
    ReportProgress(now, /*final=*/false);
    if (std::optional<Status> end = CheckVersions(started)) {
      loop.Exit(*end);
      return EventLoop::kNever;
    }
    if (now >= next_check) {
      next_check = now + std::min<SteadyClock::duration>(options_.heartbeat_interval,
                                                         std::chrono::milliseconds(250));
      if (std::optional<Status> end = CheckNodes(now, started, registration_deadline)) {
        loop.Exit(*end);
        return EventLoop::kNever;
      }
    }
    const auto next_snapshot =
        versions_ ? versions_->next_deadline() : SteadyClock::time_point::max();
    return std::min({next_check, next_progress_, next_snapshot});
  });
  return loop.Run();
}

std::optional<Status> SchedulerNode::ReceiveOne(SteadyClock::time_point started) {
  std::string routing_id;
  int fd = -1;
  StatusOr<Message> msg = RecvMessage(*socket_, &routing_id, &fd);
  if (Node* node = FindNode(routing_id)) {
    node->fd = fd;
    node->closed_at.reset();  // it speaks: alive (over a new connection, maybe)
    if (node->lost && recovery_.active()) {
      if (std::optional<Status> end = OnLostNodeReturned(*node)) return end;
    }
  }
  if (!msg.ok()) {
    LOG(WARNING) << "scheduler: dropped a control message: " << msg.status();
    if (msg.status().code() == StatusCode::kFailedPrecondition && !routing_id.empty()) {
      SendTo(routing_id, proto::ABORT, msg.status().message());
    }
    return std::nullopt;
  }
  const bool registration = msg->header.type() == proto::REGISTER;
  std::optional<Status> end = OnMessage(routing_id, *msg, started);
  // A registration (or a replacement's) made the node: its connection is known
  // from its first message on, not only from its first heartbeat.
  if (registration) {
    if (Node* node = FindNode(routing_id)) node->fd = fd;
  }
  return end;
}

std::optional<Status> SchedulerNode::OnMessage(const std::string& routing_id, Message& msg,
                                               SteadyClock::time_point started) {
  const proto::Header& h = msg.header;
  Node* node = FindNode(routing_id);
  if (node != nullptr) node->last_seen = SteadyClock::now();
  switch (h.type()) {
    case proto::REGISTER:
      return OnRegister(routing_id, h);
    case proto::HEARTBEAT:
      if (node == nullptr) break;
      if (node->role == proto::SERVER && !h.payload().empty() &&
          !node->server_report.ParseFromString(h.payload())) {
        LOG_EVERY_N(WARNING, 100) << "scheduler: " << node->Name() << " sent a malformed report";
      }
      SendTo(routing_id, proto::HEARTBEAT);
      break;
    case proto::BARRIER:
      OnBarrier(node, routing_id, h);
      break;
    case proto::WORKER_DONE:
      if (OnWorkerDone(node, h)) return EndJob(started);
      break;
    case proto::METRICS:
      OnMetrics(node, msg.header);
      break;
    case proto::SNAPSHOT_READY:
      OnSnapshotReady(node, h);
      break;
    case proto::SNAPSHOT_DONE:
      OnSnapshotDone(node, h);
      break;
    case proto::SNAPSHOT_NOW:
      OnSnapshotNow(routing_id, h);
      break;
    case proto::RECOVERED:
      return OnRecovered(node, h);
    case proto::ABORT: {
      if (node == nullptr) break;
      std::string why = node->Name() + " failed: " + h.status_message();
      LOG(ERROR) << "scheduler: " << why << "; aborting the job";
      Broadcast(proto::ABORT, why);
      return AbortedError(why);
    }
    default:
      LOG(WARNING) << "scheduler: ignored unexpected " << MsgTypeName(h.type()) << " message";
  }
  return std::nullopt;
}

void SchedulerNode::OnBarrier(const Node* node, const std::string& routing_id,
                              const proto::Header& header) {
  if (node == nullptr || node->role != proto::WORKER) return;
  barriers_[header.table()].push_back(routing_id);
  ReleaseCompleteBarriers();
}

bool SchedulerNode::OnWorkerDone(Node* node, const proto::Header& header) {
  if (node == nullptr || node->role != proto::WORKER || node->done) return false;
  node->done = true;
  node->report = header.payload();
  {
    MutexLock lock(&reports_mu_);
    reports_[node->id] = header.payload();
  }
  LOG(INFO) << "scheduler: " << node->Name() << " finished";
  return ReadyToEnd();
}

void SchedulerNode::OnSnapshotNow(const std::string& routing_id, const proto::Header& header) {
  // On demand, from anyone who can reach the control socket.
  Message reply{MakeHeader(proto::REPLY, header.request_id()), {}, {}};
  if (!versions_ || !cluster_up_) {
    SetStatus(FailedPreconditionError(!versions_ ? "this job has no --model_dir"
                                                 : "the cluster is not up yet"),
              &reply.header);
  } else {
    reply.header.set_version(static_cast<int64_t>(versions_->RequestNow()));
  }
  SendMessage(*socket_, reply, routing_id, /*dont_wait=*/true).IgnoreError();
}

void SchedulerNode::OnSnapshotReady(const Node* node, const proto::Header& header) {
  if (node == nullptr || node->role != proto::SERVER || !versions_) return;
  versions_->OnReady(node->id, static_cast<uint64_t>(header.version()));
}

void SchedulerNode::OnSnapshotDone(const Node* node, const proto::Header& header) {
  proto::SnapshotReport report;
  if (node == nullptr || node->role != proto::SERVER || !report.ParseFromString(header.payload())) {
    LOG(WARNING) << "scheduler: ignored a SNAPSHOT_DONE that is not from a server";
    return;
  }
  if (versions_) versions_->OnDone(node->id, node->Name(), std::move(report));
}

std::optional<Status> SchedulerNode::CheckVersions(SteadyClock::time_point started) {
  if (!cluster_up_ || !versions_) return std::nullopt;
  std::optional<uint64_t> rows;
  if (options_.snapshot_every_rows > 0 && options_.rows_from_metrics) {
    rows = options_.rows_from_metrics(latest_metrics());
  }
  versions_->Tick(rows, snapshot_requested_.exchange(false), AllLiveWorkersDone());
  if (!versions_->pending() && ReadyToEnd()) return EndJob(started);
  return std::nullopt;
}

std::optional<Status> SchedulerNode::CheckNodes(SteadyClock::time_point now,
                                                SteadyClock::time_point started,
                                                SteadyClock::time_point registration_deadline) {
  if (!cluster_up_) {
    if (now <= registration_deadline) return std::nullopt;
    int servers = 0, workers = 0;
    for (const Node& n : nodes_) (n.role == proto::SERVER ? servers : workers)++;
    std::string why = "only " + std::to_string(servers) + " of " +
                      std::to_string(options_.num_servers) + " server(s) and " +
                      std::to_string(workers) + " of " + std::to_string(options_.num_workers) +
                      " worker(s) registered within " +
                      FormatSeconds(options_.registration_timeout) +
                      "; start the missing nodes with --scheduler=" + endpoint_;
    LOG(ERROR) << "scheduler: " << why;
    Broadcast(proto::ABORT, why);
    return DeadlineExceededError(why);
  }
  if (std::optional<Status> end = PerformRecovery(recovery_.OnTick(now))) return end;
  // A closed connection is given two heartbeats to come back.
  const auto grace = std::max<SteadyClock::duration>(2 * options_.heartbeat_interval,
                                                     std::chrono::milliseconds(200));
  for (Node& n : nodes_) {
    if (n.lost || n.awaiting_view) continue;
    const bool closed = n.closed_at && now - *n.closed_at > grace;
    if (!closed && now - n.last_seen <= options_.node_timeout) continue;
    std::string why =
        closed ? n.Name() + " stopped answering: its connection closed " +
                     FormatSeconds(now - *n.closed_at) + " ago (the process died?)"
               : n.Name() + " stopped answering: no heartbeat for " +
                     FormatSeconds(now - n.last_seen) + " (limit " +
                     FormatSeconds(options_.node_timeout) + ", --node_timeout_ms)";
    if (n.role == proto::WORKER && options_.tolerate_worker_failures && !recovery_.enabled() &&
        LiveWorkers() > 1) {
      OnWorkerLost(n, why);
      if (ReadyToEnd()) return EndJob(started);
      continue;
    }
    if (recovery_.enabled()) {
      if (std::optional<Status> end = OnNodeLost(n, why, now)) return end;
      continue;
    }
    why += "; aborting the job";
    LOG(ERROR) << "scheduler: " << why;
    Broadcast(proto::ABORT, why);
    return UnavailableError(why);
  }
  return std::nullopt;
}

void SchedulerNode::OnWorkerLost(Node& node, const std::string& why) {
  node.lost = true;
  LOG(WARNING) << "scheduler: " << why << "; going on with " << LiveWorkers()
               << " live worker(s) (--tolerate_worker_failures)";
  for (const Node& other : nodes_) {
    if (other.lost) continue;
    Message left{MakeHeader(proto::NODE_LEFT), {}, {}};
    left.header.set_sender(node.id);
    left.header.set_status_message(why);
    SendMessage(*socket_, left, other.routing_id, /*dont_wait=*/true).IgnoreError();
  }
  ReleaseCompleteBarriers();
}

}  // namespace eddy::scheduler
