#include "scheduler/scheduler_node.h"

#include <algorithm>
#include <cstdio>

#include "common/message.h"
#include "common/table_config.h"
#include "model_store/retention.h"
#include "model_store/version_dir.h"
#include "model_store/version_service.h"
#include "model_store/version_writer.h"

namespace eddy::scheduler {
namespace {

// Dropped METRICS messages are logged up to this many times per kind, then only counted.
constexpr uint64_t kLoggedMetricsDrops = 5;

std::string Seconds(SteadyClock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", std::chrono::duration<double>(d).count());
  return buf;
}

}  // namespace

Status ValidateSchedulerOptions(const SchedulerOptions& o) {
  if (o.num_servers < 1) return InvalidArgumentError("--num_servers must be at least 1");
  if (o.num_workers < 1)
    return InvalidArgumentError(
        "--num_workers must be at least 1 (under mpirun: use more ranks than 1 + --num_servers)");
  if (o.heartbeat_interval.count() <= 0)
    return InvalidArgumentError("--heartbeat_interval_ms must be > 0");
  if (o.node_timeout <= o.heartbeat_interval) {
    return InvalidArgumentError("--node_timeout_ms (" + std::to_string(o.node_timeout.count()) +
                                ") must be larger than --heartbeat_interval_ms (" +
                                std::to_string(o.heartbeat_interval.count()) + "), e.g. 5x");
  }
  if (o.server_shards == 0 || o.server_shards > 65536)
    return InvalidArgumentError("--server_shards must be in [1, 65536]");
  if (o.tables.empty()) return InvalidArgumentError("no tables defined (--tables)");
  if (o.aggregate != "none" && o.aggregate != "sum" && o.aggregate != "mean") {
    return InvalidArgumentError("--aggregate must be none, sum or mean, not '" + o.aggregate + "'");
  }
  if (o.aggregate != "none" && o.staleness != 0) {
    return InvalidArgumentError("--aggregate=" + o.aggregate +
                                " applies each clock's gradients together, so pulls must wait "
                                "for it: use it with --staleness=0");
  }
  if (o.staleness < -1) {
    return InvalidArgumentError("--staleness must be >= 0 (bounded) or -1 (unbounded), not " +
                                std::to_string(o.staleness));
  }
  if (o.on_progress && o.progress_interval.count() <= 0) {
    return InvalidArgumentError("the progress interval must be > 0 ms, not " +
                                std::to_string(o.progress_interval.count()));
  }
  for (const auto& t : o.tables) RETURN_IF_ERROR(ValidateTableConfig(t));
  if (o.model_dir.empty() && (o.snapshot_interval.count() > 0 || o.snapshot_every_rows > 0)) {
    return InvalidArgumentError("--snapshot_every needs --model_dir: where should versions go?");
  }
  if (o.snapshot_interval.count() < 0) {
    return InvalidArgumentError("the snapshot interval must be >= 0");
  }
  if (o.full_every < 1) {
    return InvalidArgumentError("--full_every must be at least 1 (1: every version is full), not " +
                                std::to_string(o.full_every));
  }
  if (o.keep_full_versions < 1) {
    return InvalidArgumentError("--keep_versions must be at least 1, not " +
                                std::to_string(o.keep_full_versions));
  }
  if (o.resume_version > 0 && static_cast<int>(o.resume_positions.size()) != o.num_workers) {
    return InvalidArgumentError(
        "version " + std::to_string(o.resume_version) + " was cut with " +
        std::to_string(o.resume_positions.size()) +
        " worker(s); resume it with --num_workers=" + std::to_string(o.resume_positions.size()) +
        " (each worker goes on from its own position in its part of the stream)");
  }
  return OkStatus();
}

std::string SchedulerNode::Node::Name() const {
  std::string s = role == proto::SERVER ? "server " : "worker ";
  s += std::to_string(id) + " (" + info.host() + ":" + std::to_string(info.pid());
  if (!info.endpoint().empty()) s += ", " + info.endpoint();
  return s + ")";
}

SchedulerNode::PendingVersion::PendingVersion() = default;

SchedulerNode::SchedulerNode(zmq::context_t& context, SchedulerOptions options)
    : context_(context), options_(std::move(options)) {
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
    if (versions.ok() && !versions->empty()) {
      next_version_ = versions->back() + 1;
      last_version_.store(versions->back());
    } else if (!versions.ok() && versions.status().code() != StatusCode::kNotFound) {
      return versions.status().WithContext("--model_dir");
    }
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
            << Seconds(SteadyClock::now() - started);
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
  options_.on_progress(latest_metrics(), final);
}

bool SchedulerNode::ReadyToEnd() {
  if (!cluster_up_ || !AllLiveWorkersDone()) return false;
  if (options_.model_dir.empty() || !options_.snapshot_at_end) return true;
  if (pending_version_) return false;
  if (!final_version_taken_) {
    final_version_taken_ = true;
    StartVersion();
    return !pending_version_;
  }
  return true;
}

void SchedulerNode::StartVersion() {
  if (options_.model_dir.empty() || !cluster_up_) return;
  if (pending_version_) {
    snapshot_wanted_ = true;  // right after the one in progress
    return;
  }
  const uint64_t version = next_version_++;
  // A delta against the previous version of this job, unless a full one is due.
  const bool full = last_committed_ == 0 || force_full_ ||
                    deltas_since_full_ + 1 >= static_cast<uint64_t>(options_.full_every);
  const uint64_t parent = full ? 0 : last_committed_;
  auto writer = model_store::VersionWriter::Begin(
      options_.model_dir, version, parent, /*serving=*/false, proto::Manifest::ENCODING_FLOAT32);
  if (!writer.ok()) {
    VersionSummary summary;
    summary.version = version;
    summary.error = writer.status().ToString();
    LOG(ERROR) << "scheduler: version " << version << " failed: " << summary.error;
    {
      MutexLock lock(&metrics_mu_);
      ++stats_.versions_failed;
    }
    if (options_.on_version) options_.on_version(summary);
    return;
  }
  PendingVersion& pv = pending_version_.emplace();
  pv.version = version;
  pv.parent = parent;
  pv.started = SteadyClock::now();
  proto::SnapshotRequest request;
  request.set_version(version);
  request.set_parent_version(parent);
  request.set_temp_dir(writer->temp_dir());
  request.set_encoding(proto::Manifest::ENCODING_FLOAT32);
  request.set_fail_after_bytes(options_.test_fail_after_bytes);
  pv.writer.emplace(std::move(writer).value());
  request.set_evict_after_versions(options_.evict_after_versions);
  const std::string body = request.SerializeAsString();
  // Servers first; workers are told once every server has the request (see
  // OnSnapshotReady), so a server never sees a marker before the request.
  for (const Node& n : nodes_) {
    if (n.role != proto::SERVER) continue;
    Message m{MakeHeader(proto::SNAPSHOT), {}, {}};
    m.header.set_version(static_cast<int64_t>(version));
    m.header.set_payload(body);
    SendMessage(*socket_, m, n.routing_id, /*dont_wait=*/true).IgnoreError();
  }
  VLOG(1) << "scheduler: taking version " << version;
}

void SchedulerNode::OnSnapshotReady(const Node* node, const proto::Header& header) {
  if (node == nullptr || node->role != proto::SERVER || !pending_version_ ||
      static_cast<uint64_t>(header.version()) != pending_version_->version ||
      pending_version_->workers_told) {
    return;
  }
  if (++pending_version_->ready < options_.num_servers) return;
  pending_version_->workers_told = true;
  for (const Node& n : nodes_) {
    if (n.lost || n.role != proto::WORKER) continue;
    Message m{MakeHeader(proto::SNAPSHOT), {}, {}};
    m.header.set_version(static_cast<int64_t>(pending_version_->version));
    SendMessage(*socket_, m, n.routing_id, /*dont_wait=*/true).IgnoreError();
  }
}

void SchedulerNode::OnSnapshotDone(const Node* node, const proto::Header& header) {
  proto::SnapshotReport report;
  if (node == nullptr || node->role != proto::SERVER || !report.ParseFromString(header.payload())) {
    LOG(WARNING) << "scheduler: ignored a SNAPSHOT_DONE that is not from a server";
    return;
  }
  if (!pending_version_ || report.version() != pending_version_->version) {
    VLOG(1) << "scheduler: late report for version " << report.version();
    return;
  }
  if (!report.error().empty()) {
    FinishVersion(node->Name() + ": " + report.error());
    return;
  }
  pending_version_->reports[node->id] = std::move(report);
  if (static_cast<int>(pending_version_->reports.size()) == options_.num_servers) FinishVersion("");
}

void SchedulerNode::FinishVersion(std::string error) {
  PendingVersion pv = std::move(*pending_version_);
  pending_version_.reset();
  VersionSummary summary;
  summary.version = pv.version;
  summary.parent = pv.parent;
  std::map<std::string, uint32_t> state_floats;
  const proto::SnapshotReport* first = nullptr;
  for (const auto& [id, r] : pv.reports) {
    if (error.empty() &&
        (r.files_size() != r.file_dense_size() || r.files_size() != r.file_dims_size() ||
         r.files_size() != r.file_state_floats_size())) {
      error = "server " + std::to_string(id) + " sent an inconsistent report";
    }
    for (int i = 0; error.empty() && i < r.files_size(); ++i) {
      model_store::WrittenShardFile f{r.files(i), r.file_dense(i), r.file_dims(i),
                                      r.file_state_floats(i), proto::Manifest::ENCODING_FLOAT32};
      Status s = pv.writer->AddWrittenFile(f);
      if (!s.ok()) error = s.ToString();
      state_floats[r.files(i).table()] = r.file_state_floats(i);
      summary.bytes += r.files(i).bytes();
    }
    if (first == nullptr) {
      first = &r;
    } else if (error.empty()) {
      // Every server saw the same markers, so they agree on every worker's cut.
      bool same = first->cuts_size() == r.cuts_size();
      for (int i = 0; same && i < r.cuts_size(); ++i) {
        same = first->cuts(i).SerializeAsString() == r.cuts(i).SerializeAsString();
      }
      if (!same) error = "servers disagree on the workers' cut (a bug): see the server logs";
    }
    summary.rows += r.rows();
    summary.evicted += r.evicted();
    summary.pause_seconds = std::max(summary.pause_seconds, r.pause_seconds());
    summary.window_seconds = std::max(summary.window_seconds, r.window_seconds());
    summary.write_seconds = std::max(summary.write_seconds, r.write_seconds());
  }
  if (error.empty() && first != nullptr) {
    model_store::VersionInfo info;
    for (const proto::TableConfig& t : options_.tables) {
      model_store::TableSchema& schema = info.tables.emplace_back();
      schema.set_name(t.name());
      schema.set_dense(t.dense());
      schema.set_dim(t.dim());
      for (uint64_t d : t.shape()) schema.add_shape(d);
      schema.set_optimizer(t.optimizer().kind());
      schema.set_state_floats_per_value(state_floats[t.name()]);
    }
    for (const proto::WorkerCut& c : first->cuts()) {
      model_store::StreamPosition& p = info.positions.emplace_back();
      p.set_worker(c.worker());
      p.set_rows_consumed(c.rows_consumed());
      summary.cuts.push_back(c);
    }
    if (options_.version_metrics) {
      // A finished worker's final report is newer than its last METRICS.
      std::vector<std::string> latest = latest_metrics();
      for (const Node& n : nodes_) {
        if (n.role == proto::WORKER && n.done && n.id < static_cast<int>(latest.size())) {
          latest[n.id] = n.report;
        }
      }
      info.metrics = options_.version_metrics(latest);
    }
    info.metrics["pause_ms"] = summary.pause_seconds * 1e3;
    info.metrics["cut_window_ms"] = summary.window_seconds * 1e3;
    info.metrics["write_s"] = summary.write_seconds;
    info.attributes = options_.version_attributes;
    Status s = pv.writer->Commit(info);
    if (!s.ok()) error = s.ToString();
  }
  summary.total_seconds = std::chrono::duration<double>(SteadyClock::now() - pv.started).count();
  if (error.empty() && first == nullptr) error = "no server reported";
  if (!error.empty()) {
    pv.writer->Abort();
    summary.error = error;
    LOG(ERROR) << "scheduler: version " << pv.version
               << " failed (older versions stay valid): " << error;
    force_full_ = true;  // servers may hold captures the scheduler never committed
    MutexLock lock(&metrics_mu_);
    ++stats_.versions_failed;
  } else {
    summary.ok = true;
    summary.dir = pv.writer->final_dir();
    last_committed_ = pv.version;
    force_full_ = false;
    deltas_since_full_ = pv.parent == 0 ? 0 : deltas_since_full_ + 1;
    last_version_.store(pv.version);
    {
      MutexLock lock(&metrics_mu_);
      ++stats_.versions_committed;
    }
    char line[256];
    std::snprintf(line, sizeof(line),
                  "%s, %llu rows, %.1f MB, training paused %.2f ms, cut window %.2f ms, "
                  "written in %.2f s",
                  pv.parent == 0 ? "full" : "delta", static_cast<unsigned long long>(summary.rows),
                  summary.bytes / 1e6, summary.pause_seconds * 1e3, summary.window_seconds * 1e3,
                  summary.total_seconds);
    LOG(INFO) << "scheduler: version " << pv.version << " committed at " << summary.dir << ": "
              << line;
    Status r = model_store::ApplyRetention(options_.model_dir, options_.keep_full_versions);
    if (!r.ok()) LOG(WARNING) << "scheduler: retention: " << r;
    if (version_service_) version_service_->Notify();
  }
  if (options_.on_version) options_.on_version(summary);
  if (snapshot_wanted_) {
    snapshot_wanted_ = false;
    StartVersion();
  }
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

void SchedulerNode::OnRegister(const std::string& routing_id, const proto::Header& header) {
  proto::NodeInfo info;
  if (!info.ParseFromString(header.payload()) ||
      (info.role() != proto::SERVER && info.role() != proto::WORKER)) {
    LOG(WARNING) << "scheduler: ignored a malformed registration";
    return;
  }
  if (FindNode(routing_id) != nullptr) return;  // duplicate
  const bool server = info.role() == proto::SERVER;
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
    return;
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
}

void SchedulerNode::SendViews() {
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
  if (options_.resume_version > 0) {
    view.set_resume_root(options_.resume_root);
    view.set_resume_version(options_.resume_version);
    for (const auto& p : options_.resume_positions) *view.add_resume_positions() = p;
  }
  const auto now = SteadyClock::now();
  if (!options_.model_dir.empty() && options_.snapshot_interval.count() > 0) {
    next_snapshot_ = now + options_.snapshot_interval;
  }
  next_snapshot_rows_ = options_.snapshot_every_rows;
  for (Node& n : nodes_) {
    view.set_your_id(n.id);
    Message m{MakeHeader(proto::CLUSTER_VIEW), {}, {}};
    m.header.set_payload(view.SerializeAsString());
    SendMessage(*socket_, m, n.routing_id, /*dont_wait=*/true).IgnoreError();
    n.last_seen = now;
  }
  cluster_up_ = true;
  if (options_.on_progress) next_progress_ = now + options_.progress_interval;
  {
    MutexLock lock(&reports_mu_);
    reports_.assign(options_.num_workers, std::string());
  }
  LOG(INFO) << "scheduler: cluster up with " << options_.num_servers << " server(s) and "
            << options_.num_workers << " worker(s)";
}

Status SchedulerNode::Run() {
  if (!socket_) RETURN_IF_ERROR(Bind().status());
  if (!options_.model_dir.empty() && options_.serve_port >= 0 && !version_service_) {
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
  }
  const auto started = SteadyClock::now();
  const auto registration_deadline = started + options_.registration_timeout;
  auto next_check = started + options_.heartbeat_interval;
  std::string routing_id;
  while (true) {
    if (stop_.load()) {
      Broadcast(proto::ABORT, "scheduler stopped");
      return CancelledError("scheduler stopped");
    }
    zmq::pollitem_t items[2] = {{socket_->handle(), 0, ZMQ_POLLIN, 0},
                                {nullptr, stop_waker_.fd(), ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2,
                std::chrono::milliseconds(
                    PollTimeoutMs(std::min({next_check, next_progress_, next_snapshot_}), 1000)));
    } catch (const zmq::error_t& e) {
      return UnavailableError(std::string("poll failed: ") + e.what());
    }
    if (items[1].revents & ZMQ_POLLIN) stop_waker_.Drain();
    while (items[0].revents & ZMQ_POLLIN) {
      routing_id.clear();
      StatusOr<Message> msg = RecvMessage(*socket_, &routing_id);
      if (!msg.ok()) {
        LOG(WARNING) << "scheduler: dropped a control message: " << msg.status();
        if (msg.status().code() == StatusCode::kFailedPrecondition && !routing_id.empty()) {
          SendTo(routing_id, proto::ABORT, msg.status().message());
        }
      } else {
        const proto::Header& h = msg->header;
        Node* node = FindNode(routing_id);
        if (node != nullptr) node->last_seen = SteadyClock::now();
        switch (h.type()) {
          case proto::REGISTER:
            OnRegister(routing_id, h);
            break;
          case proto::HEARTBEAT:
            if (node != nullptr) SendTo(routing_id, proto::HEARTBEAT);
            break;
          case proto::BARRIER: {
            if (node == nullptr || node->role != proto::WORKER) break;
            barriers_[h.table()].push_back(routing_id);
            ReleaseCompleteBarriers();
            break;
          }
          case proto::WORKER_DONE: {
            if (node == nullptr || node->role != proto::WORKER || node->done) break;
            node->done = true;
            node->report = h.payload();
            {
              MutexLock lock(&reports_mu_);
              reports_[node->id] = h.payload();
            }
            LOG(INFO) << "scheduler: " << node->Name() << " finished";
            if (ReadyToEnd()) return EndJob(started);
            break;
          }
          case proto::METRICS:
            OnMetrics(node, msg->header);
            break;
          case proto::SNAPSHOT_READY:
            OnSnapshotReady(node, h);
            break;
          case proto::SNAPSHOT_DONE:
            OnSnapshotDone(node, h);
            break;
          case proto::SNAPSHOT_NOW: {
            // On demand, from anyone who can reach the control socket.
            Message reply{MakeHeader(proto::REPLY, h.request_id()), {}, {}};
            if (options_.model_dir.empty() || !cluster_up_) {
              SetStatus(
                  FailedPreconditionError(options_.model_dir.empty() ? "this job has no --model_dir"
                                                                     : "the cluster is not up yet"),
                  &reply.header);
            } else {
              // The version that will hold this request: the next one to start.
              reply.header.set_version(static_cast<int64_t>(next_version_));
              StartVersion();
            }
            SendMessage(*socket_, reply, routing_id, /*dont_wait=*/true).IgnoreError();
            break;
          }
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
      }
      if (zmq::poll(items, 1, std::chrono::milliseconds(0)) == 0) break;
    }
    const auto now = SteadyClock::now();
    ReportProgress(now, /*final=*/false);
    if (cluster_up_ && !options_.model_dir.empty()) {
      bool take = snapshot_requested_.exchange(false);
      if (now >= next_snapshot_) {
        take = true;
        next_snapshot_ = now + options_.snapshot_interval;
      }
      if (next_snapshot_rows_ > 0 && options_.rows_from_metrics &&
          options_.rows_from_metrics(latest_metrics()) >= next_snapshot_rows_) {
        take = true;
        while (next_snapshot_rows_ <= options_.rows_from_metrics(latest_metrics())) {
          next_snapshot_rows_ += options_.snapshot_every_rows;
        }
      }
      if (take && !AllLiveWorkersDone()) StartVersion();
      if (pending_version_ && now - pending_version_->started > options_.snapshot_timeout) {
        FinishVersion("not every server wrote its part within " +
                      Seconds(options_.snapshot_timeout));
      }
      if (!pending_version_ && ReadyToEnd()) return EndJob(started);
    }
    if (now < next_check) continue;
    next_check = now + std::min<SteadyClock::duration>(options_.heartbeat_interval,
                                                       std::chrono::milliseconds(250));
    if (!cluster_up_) {
      if (now > registration_deadline) {
        int servers = 0, workers = 0;
        for (const Node& n : nodes_) (n.role == proto::SERVER ? servers : workers)++;
        std::string why = "only " + std::to_string(servers) + " of " +
                          std::to_string(options_.num_servers) + " server(s) and " +
                          std::to_string(workers) + " of " + std::to_string(options_.num_workers) +
                          " worker(s) registered within " + Seconds(options_.registration_timeout) +
                          "; start the missing nodes with --scheduler=" + endpoint_;
        LOG(ERROR) << "scheduler: " << why;
        Broadcast(proto::ABORT, why);
        return DeadlineExceededError(why);
      }
      continue;
    }
    for (Node& n : nodes_) {
      if (n.lost || now - n.last_seen <= options_.node_timeout) continue;
      std::string why = n.Name() + " stopped answering: no heartbeat for " +
                        Seconds(now - n.last_seen) + " (limit " + Seconds(options_.node_timeout) +
                        ", --node_timeout_ms)";
      if (n.role == proto::WORKER && options_.tolerate_worker_failures && LiveWorkers() > 1) {
        n.lost = true;
        LOG(WARNING) << "scheduler: " << why << "; going on with " << LiveWorkers()
                     << " live worker(s) (--tolerate_worker_failures)";
        for (const Node& other : nodes_) {
          if (other.lost) continue;
          Message left{MakeHeader(proto::NODE_LEFT), {}, {}};
          left.header.set_sender(n.id);
          left.header.set_status_message(why);
          SendMessage(*socket_, left, other.routing_id, /*dont_wait=*/true).IgnoreError();
        }
        ReleaseCompleteBarriers();
        if (ReadyToEnd()) return EndJob(started);
        continue;
      }
      why += "; aborting the job";
      LOG(ERROR) << "scheduler: " << why;
      Broadcast(proto::ABORT, why);
      return UnavailableError(why);
    }
  }
}

}  // namespace eddy::scheduler
