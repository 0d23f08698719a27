#include "server/server_node.h"

#include <algorithm>
#include <limits>
#include <set>

#include "common/message.h"
#include "common/scheduler_link.h"
#include "model_store/model_format.h"

namespace eddy::server {

ServerNode::Cut::Cut() = default;

ServerNode::ServerNode(zmq::context_t& context, ServerOptions options)
    : context_(context), options_(std::move(options)) {}

ServerNode::~ServerNode() {
  if (writer_.joinable()) writer_.join();
}

void ServerNode::Stop() {
  stop_.store(true);
  stop_waker_.Notify();
}

std::string ServerNode::endpoint() const {
  MutexLock lock(&mu_);
  return endpoint_;
}

bool ServerNode::WaitUntilServing(std::chrono::milliseconds timeout) {
  MutexLock lock(&mu_);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!serving_ && !ended_) {
    if (!serving_cv_.WaitUntil(&mu_, deadline)) break;
  }
  return serving_;
}

ServerStats ServerNode::stats() const {
  ServerStats s;
  if (ParameterStore* store = store_ptr_.load()) {
    ParameterStoreStats ps = store->stats();
    s.requests = ps.requests;
    s.error_replies = ps.errors;
  }
  s.error_replies += refused_.load();
  s.dropped_messages = dropped_.load();
  s.versions_captured = versions_captured_.load();
  s.versions_failed = versions_failed_.load();
  return s;
}

Status ServerNode::Run() {
  Status s = RunInternal();
  {
    MutexLock lock(&mu_);
    serving_ = false;
    ended_ = true;
  }
  serving_cv_.NotifyAll();
  return s;
}

Status ServerNode::RunInternal() {
  zmq::socket_t router(context_, zmq::socket_type::router);
  ConfigureSocket(router, /*linger_ms=*/1000, options_.max_message_bytes);
  router.set(zmq::sockopt::router_mandatory, 0);
  ASSIGN_OR_RETURN(std::string bound, BindTcp(router, options_.bind_host, options_.port));
  const std::string advertised = AdvertisedEndpoint(bound);
  {
    MutexLock lock(&mu_);
    endpoint_ = advertised;
  }

  SchedulerLinkOptions link_options;
  link_options.scheduler_endpoint = options_.scheduler;
  link_options.registration_timeout = options_.registration_timeout;
  link_options.self.set_role(proto::SERVER);
  link_options.self.set_endpoint(advertised);
  link_options.self.set_host(HostName());
  link_options.self.set_pid(ProcessId());
  link_options.self.set_requested_rank(options_.requested_rank);
  link_options.transport = options_.transport;
  SchedulerLink link(context_, link_options);
  ASSIGN_OR_RETURN(proto::ClusterView view, link.Register(&stop_waker_));
  server_id_.store(view.your_id());

  ParameterStoreOptions store_options;
  store_options.server_id = static_cast<uint32_t>(view.your_id());
  store_options.num_servers = static_cast<uint32_t>(view.servers_size());
  if (view.server_shards() > 0) store_options.num_shards = view.server_shards();
  if (view.max_request_keys() > 0) store_options.max_request_keys = view.max_request_keys();
  store_options.num_threads = options_.num_threads;
  store_ = std::make_unique<ParameterStore>(store_options);
  for (const proto::TableConfig& table : view.tables()) {
    RETURN_IF_ERROR(
        store_->AddTable(table).WithContext("server " + std::to_string(view.your_id())));
  }
  store_ptr_.store(store_.get());
  if (view.resume_version() > 0) {
    RETURN_IF_ERROR(Resume(view).WithContext(
        "server " + std::to_string(view.your_id()) + ": resuming from version " +
        std::to_string(view.resume_version()) + " of " + view.resume_root()));
  }
  gate_ = std::make_unique<StalenessGate>(view.workers_size(), view.staleness());
  worker_rows_.assign(view.workers_size(), {});
  worker_lost_.assign(view.workers_size(), false);
  if (view.aggregate() == "sum" || view.aggregate() == "mean") {
    aggregator_ = std::make_unique<ClockAggregator>();
    aggregate_mean_ = view.aggregate() == "mean";
  }
  {
    MutexLock lock(&mu_);
    serving_ = true;
  }
  serving_cv_.NotifyAll();
  LOG(INFO) << "server " << view.your_id() << " serving " << view.tables_size() << " table(s) at "
            << advertised;
  return Serve(router, link);
}

Status ServerNode::Resume(const proto::ClusterView& view) {
  const auto started = SteadyClock::now();
  std::set<std::string> dense;
  for (const proto::TableConfig& t : view.tables()) {
    if (t.dense()) dense.insert(t.name());
  }
  // With the same server count a server's keys are all in its own sparse files;
  // otherwise every sparse file is read and the server keeps the keys it owns.
  ASSIGN_OR_RETURN(std::vector<uint64_t> chain,
                   model_store::ResolveChain(view.resume_root(), view.resume_version()));
  ASSIGN_OR_RETURN(model_store::VersionReader last,
                   model_store::VersionReader::Open(view.resume_root() + "/" +
                                                    model_store::VersionDirName(chain.back())));
  std::set<uint32_t> shards;
  for (const model_store::FileEntry& f : last.manifest().files()) {
    if (!dense.count(f.table())) shards.insert(f.shard());
  }
  model_store::MaterializeOptions load;
  const uint32_t me = static_cast<uint32_t>(view.your_id());
  if (shards.size() == static_cast<size_t>(view.servers_size()) &&
      (shards.empty() || *shards.rbegin() + 1 == shards.size())) {
    load.include = [&dense, me](const model_store::FileEntry& f) {
      return dense.count(f.table()) > 0 || f.shard() == me;
    };
  }
  ASSIGN_OR_RETURN(model_store::MaterializedModel model,
                   model_store::Materialize(view.resume_root(), view.resume_version(), load));
  RETURN_IF_ERROR(store_->Restore(model));
  LOG(INFO) << "server " << view.your_id() << " restored version " << view.resume_version()
            << " in " << std::chrono::duration<double>(SteadyClock::now() - started).count()
            << " s";
  return OkStatus();
}

void ServerNode::Answer(zmq::socket_t& router, const std::string& routing_id,
                        const Message& request) {
  Message reply = store_->Handle(request);
  const proto::MsgType type = request.header.type();
  if (type == proto::PULL || type == proto::PULL_DENSE || type == proto::PUSH_PULL) {
    // The slowest live worker's clock when the values were read: the reader's
    // clock minus this is the staleness the pull saw.
    reply.header.set_clock(gate_->min_clock());
  }
  if (!reply.header.status_message().empty()) {
    uint64_t n = store_->stats().errors;
    if (n <= 10 || n % 1000 == 0) {
      LOG(WARNING) << "server " << server_id_.load() << ": refused a "
                   << MsgTypeName(request.header.type()) << " request (" << n
                   << " so far): " << reply.header.status_message();
    }
  }
  Status sent = SendMessage(router, reply, routing_id, /*dont_wait=*/true);
  if (!sent.ok()) VLOG(1) << "reply not sent: " << sent;
}

void ServerNode::Dispatch(zmq::socket_t& router, const std::string& routing_id, Message request) {
  const proto::MsgType type = request.header.type();
  if (type == proto::CUT) {
    OnMarker(router, request);
    return;
  }
  if (type == proto::CLOCK) {
    const int w = request.header.sender();
    // A finished worker's last CLOCK (the largest clock) only says so; its
    // position is the one of its last real clock.
    if (w >= 0 && w < static_cast<int>(worker_rows_.size()) &&
        request.header.clock() != std::numeric_limits<int64_t>::max()) {
      auto& rows = worker_rows_[w];
      rows.emplace_back(request.header.clock(), request.header.offset());
      while (rows.size() > 1024) rows.pop_front();
    }
    Message reply{MakeHeader(proto::REPLY, request.header.request_id()), {}, {}};
    StatusOr<std::vector<StalenessGate::Held>> released =
        gate_->Advance(request.header.sender(), request.header.clock());
    if (!released.ok()) {
      SetStatus(released.status(), &reply.header);
      uint64_t n = refused_.fetch_add(1) + 1;
      if (n <= 10 || n % 1000 == 0) {
        LOG(WARNING) << "server " << server_id_.load() << ": refused a CLOCK (" << n
                     << " so far): " << released.status().message();
      }
    }
    SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
    if (!released.ok()) return;
    ApplyClosedClocksAndRelease(router, std::move(released).value());
    return;
  }
  if (aggregator_ && (type == proto::PUSH || type == proto::PUSH_DENSE)) {
    // Accepted into its clock's sum (acknowledged now, applied exactly once when
    // every worker has finished the clock); a push for a closed clock applies now.
    Message reply = store_->Handle(request, /*apply=*/false);
    if (reply.header.status_code() == 0) {
      if (request.header.clock() < gate_->min_clock()) {
        reply = store_->Handle(request);
      } else {
        aggregator_->Add(request);
      }
    }
    SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
    return;
  }
  if (!aggregator_ &&
      (type == proto::PUSH || type == proto::PUSH_DENSE || type == proto::PUSH_PULL) &&
      HoldsPushesOf(request.header.sender())) {
    // After this worker's marker: belongs to the next version. Acknowledged now
    // (PUSH_PULL: answered with its values later), applied right after the capture.
    Message reply = store_->Handle(request, /*apply=*/false);
    if (reply.header.status_code() != 0 || type != proto::PUSH_PULL) {
      SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
    }
    if (reply.header.status_code() == 0) {
      cut_->deferred.emplace_back(type == proto::PUSH_PULL ? routing_id : std::string(),
                                  std::move(request));
    }
    return;
  }
  if (aggregator_ && type == proto::PUSH_PULL) {
    Message reply{MakeHeader(proto::REPLY, request.header.request_id()), {}, {}};
    SetStatus(FailedPreconditionError("PushPull cannot be used when pushes are applied per clock "
                                      "(--aggregate): push, Clock(), then pull"),
              &reply.header);
    refused_.fetch_add(1);
    SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
    return;
  }
  const bool is_pull = type == proto::PULL || type == proto::PUSH_PULL || type == proto::PULL_DENSE;
  if (is_pull && !gate_->Admits(request.header.clock())) {
    gate_->Hold(routing_id, std::move(request));
    return;
  }
  Answer(router, routing_id, request);
}

void ServerNode::ApplyClosedClocksAndRelease(zmq::socket_t& router,
                                             std::vector<StalenessGate::Held> released) {
  if (aggregator_) {
    auto apply_before = [&](int64_t clock) {
      // Mean: over the workers that pushed in the clock (a finished worker no
      // longer does; one that pushed and then finished still counts).
      for (const Message& push : aggregate_mean_ ? aggregator_->TakeMeanBefore(clock)
                                                 : aggregator_->TakeBefore(clock, 1.0f)) {
        Message reply = store_->Handle(push);
        if (reply.header.status_code() != 0) {
          LOG(ERROR) << "server " << server_id_.load() << ": applying the sum of clock "
                     << push.header.clock() << " failed: " << reply.header.status_message();
        }
      }
    };
    if (cut_ && !cut_->captured && cut_->target_clock >= 0 &&
        gate_->min_clock() >= cut_->target_clock) {
      // Pushes of batch k carry clock k - 1: this applies clocks 1..target.
      apply_before(cut_->target_clock);
      Capture(router, cut_->target_clock);
    }
    apply_before(gate_->min_clock());
  }
  for (StalenessGate::Held& held : released) Answer(router, held.routing_id, held.request);
}

Status ServerNode::Serve(zmq::socket_t& router, SchedulerLink& link) {
  link_ = &link;
  std::string routing_id;
  while (true) {
    if (stop_.load()) return CancelledError("server stopped");
    zmq::pollitem_t items[4] = {{router.handle(), 0, ZMQ_POLLIN, 0},
                                {link.socket().handle(), 0, ZMQ_POLLIN, 0},
                                {nullptr, stop_waker_.fd(), ZMQ_POLLIN, 0},
                                {nullptr, writer_waker_.fd(), ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 4, std::chrono::milliseconds(PollTimeoutMs(link.next_tick(), 1000)));
    } catch (const zmq::error_t& e) {
      return UnavailableError(std::string("poll failed: ") + e.what());
    }
    if (items[2].revents & ZMQ_POLLIN) stop_waker_.Drain();
    if (items[3].revents & ZMQ_POLLIN) {
      writer_waker_.Drain();
      SendWrittenReport(link);
    }
    if (items[1].revents & ZMQ_POLLIN) {
      StatusOr<Message> msg = link.Receive();
      if (!msg.ok()) {
        LOG(WARNING) << "bad control message from the scheduler: " << msg.status();
      } else if (msg->header.type() == proto::SHUTDOWN) {
        LOG(INFO) << "server " << server_id_.load() << ": shutdown requested by the scheduler";
        return OkStatus();
      } else if (msg->header.type() == proto::NODE_LEFT) {
        LOG(WARNING) << "server " << server_id_.load() << ": worker " << msg->header.sender()
                     << " was lost; it no longer counts toward the staleness bound";
        const int w = msg->header.sender();
        if (w >= 0 && w < static_cast<int>(worker_lost_.size())) worker_lost_[w] = true;
        ApplyClosedClocksAndRelease(router, gate_->RemoveWorker(w));
        MaybeCapture(router);
      } else if (msg->header.type() == proto::SNAPSHOT) {
        proto::SnapshotRequest request;
        if (!request.ParseFromString(msg->header.payload()) || request.version() == 0) {
          LOG(WARNING) << "server " << server_id_.load() << ": ignored a malformed SNAPSHOT";
        } else {
          OnSnapshotRequest(router, std::move(request));
        }
      } else if (msg->header.type() == proto::ABORT) {
        return AbortedError("job aborted by the scheduler: " + msg->header.status_message());
      }
    }
    // Serve what is queued, but come back to the control socket now and then.
    for (int i = 0; i < 64 && (items[0].revents & ZMQ_POLLIN); ++i) {
      routing_id.clear();
      StatusOr<Message> request = RecvMessage(router, &routing_id);
      if (!request.ok()) {
        uint64_t n = dropped_.fetch_add(1) + 1;
        if (n <= 10 || n % 1000 == 0) {
          LOG(WARNING) << "server " << server_id_.load() << ": dropped a message it cannot parse ("
                       << n << " so far): " << request.status();
        }
        if (request.status().code() == StatusCode::kFailedPrecondition && !routing_id.empty()) {
          Message reply{MakeHeader(proto::REPLY), {}, {}};
          SetStatus(request.status(), &reply.header);
          SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
        }
      } else {
        Dispatch(router, routing_id, std::move(request).value());
      }
      if (zmq::poll(items, 1, std::chrono::milliseconds(0)) == 0) break;
    }
    RETURN_IF_ERROR(link.Tick(SteadyClock::now()));
  }
}

bool ServerNode::HoldsPushesOf(int worker) const {
  return cut_ && !cut_->captured && worker >= 0 && worker < static_cast<int>(cut_->marked.size()) &&
         cut_->marked[worker];
}

std::optional<uint64_t> ServerNode::RowsAt(int worker, int64_t clock) const {
  if (clock == 0) return 0;
  for (auto it = worker_rows_[worker].rbegin(); it != worker_rows_[worker].rend(); ++it) {
    if (it->first == clock) return it->second;
  }
  return std::nullopt;
}

ServerNode::Cut* ServerNode::CutFor(zmq::socket_t& router, uint64_t version) {
  if (cut_ && cut_->version > version) return nullptr;
  if (cut_ && cut_->version == version) return &*cut_;
  if (cut_) {
    // A newer version started before this one completed (the scheduler gave up
    // on it): drop it, keeping every held push.
    LOG(WARNING) << "server " << server_id_.load() << ": version " << cut_->version
                 << " abandoned for version " << version;
    if (!cut_->captured) ReleaseDeferred(router);
    if (cut_->captured && !cut_->request) cut_.reset();
    if (cut_) return nullptr;  // still writing the older one; the scheduler will retry
  }
  const size_t n = worker_rows_.size();
  cut_.emplace();
  cut_->version = version;
  cut_->marked.assign(n, false);
  cut_->marker_clock.assign(n, 0);
  cut_->marker_rows.assign(n, 0);
  return &*cut_;
}

void ServerNode::OnMarker(zmq::socket_t& router, const Message& marker) {
  const int w = marker.header.sender();
  if (w < 0 || w >= static_cast<int>(worker_rows_.size()) || marker.header.version() <= 0) {
    uint64_t n = refused_.fetch_add(1) + 1;
    if (n <= 10 || n % 1000 == 0) {
      LOG(WARNING) << "server " << server_id_.load() << ": ignored a CUT marker from sender " << w
                   << " for version " << marker.header.version();
    }
    return;
  }
  Cut* cut = CutFor(router, static_cast<uint64_t>(marker.header.version()));
  if (cut == nullptr || cut->captured || cut->marked[w]) return;
  if (std::none_of(cut->marked.begin(), cut->marked.end(), [](bool b) { return b; })) {
    cut->first_marker = SteadyClock::now();
  }
  cut->marked[w] = true;
  cut->marker_clock[w] = marker.header.clock();
  cut->marker_rows[w] = marker.header.offset();
  MaybeCapture(router);
}

void ServerNode::OnSnapshotRequest(zmq::socket_t& router, proto::SnapshotRequest request) {
  Cut* cut = CutFor(router, request.version());
  if (cut == nullptr) {
    LOG(WARNING) << "server " << server_id_.load() << ": ignored SNAPSHOT of version "
                 << request.version() << " (busy with version " << cut_->version << ")";
    return;
  }
  if (cut->request) return;
  if (!cut->captured &&
      std::none_of(cut->marked.begin(), cut->marked.end(), [](bool b) { return b; })) {
    cut->first_marker = SteadyClock::now();
  }
  cut->request = std::move(request);
  // The scheduler tells the workers once every server has the request.
  Status ready = link_->Send(proto::SNAPSHOT_READY, {}, {}, static_cast<int64_t>(cut->version));
  if (!ready.ok()) LOG(WARNING) << "server " << server_id_.load() << ": " << ready;
  MaybeCapture(router);
}

void ServerNode::MaybeCapture(zmq::socket_t& router) {
  if (!cut_ || !cut_->request || cut_->captured || cut_->target_clock >= 0) return;
  int64_t max_clock = 0;
  for (size_t w = 0; w < cut_->marked.size(); ++w) {
    if (!cut_->marked[w] && !worker_lost_[w]) return;
    if (cut_->marked[w]) max_clock = std::max(max_clock, cut_->marker_clock[w]);
  }
  if (!aggregator_) {
    Capture(router, -1);
    return;
  }
  // Every clock up to the largest marker clock goes into the version; no later one.
  cut_->target_clock = max_clock;
  if (gate_->min_clock() >= max_clock) {
    // Clock max_clock is applied now (sums are applied as soon as a clock closes)
    // and no later clock can be, since the last marker's sender is at max_clock.
    Capture(router, max_clock);
  }
}

void ServerNode::Capture(zmq::socket_t& router, int64_t bsp_clock) {
  Cut& cut = *cut_;
  const auto start = SteadyClock::now();
  const proto::SnapshotRequest& request = *cut.request;
  uint32_t since = 0;
  if (request.parent_version() != 0) {
    auto it = capture_epochs_.find(request.parent_version());
    since = it == capture_epochs_.end() ? 0 : it->second;
    if (since == 0)
      cut.error = "no capture of parent version " + std::to_string(request.parent_version()) +
                  " on this server (restarted?): take a full version";
  }
  if (cut.error.empty()) {
    {
      // The previous version's buffers, once written, hold this copy.
      MutexLock lock(&writer_mu_);
      if (spare_capture_) cut.capture = std::move(*spare_capture_);
      spare_capture_.reset();
    }
    store_->CaptureInto(since, request.evict_after_versions(), &cut.capture);
    capture_epochs_[cut.version] = cut.capture.epoch;
    // Deltas are taken against the last committed version: older epochs are moot.
    while (capture_epochs_.size() > 64) capture_epochs_.erase(capture_epochs_.begin());
  }
  const auto copied = SteadyClock::now();
  for (size_t w = 0; w < cut.marked.size(); ++w) {
    proto::WorkerCut& c = cut.cuts.emplace_back();
    c.set_worker(static_cast<int32_t>(w));
    if (bsp_clock >= 0) {
      c.set_clock(bsp_clock);
      std::optional<uint64_t> rows = RowsAt(static_cast<int>(w), bsp_clock);
      if (!rows && !worker_rows_[w].empty()) rows = worker_rows_[w].back().second;  // lost
      c.set_rows_consumed(rows.value_or(0));
    } else if (cut.marked[w]) {
      c.set_clock(cut.marker_clock[w]);
      c.set_rows_consumed(cut.marker_rows[w]);
    } else if (!worker_rows_[w].empty()) {  // lost: everything it sent is in
      c.set_clock(worker_rows_[w].back().first);
      c.set_rows_consumed(worker_rows_[w].back().second);
    }
  }
  cut.captured = true;
  ReleaseDeferred(router);
  cut.pause_seconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
  cut.window_seconds = std::chrono::duration<double>(copied - cut.first_marker).count();
  versions_captured_.fetch_add(1);
  VLOG(1) << "server " << server_id_.load() << ": captured version " << cut.version << " ("
          << cut.capture.rows << " rows) in " << cut.pause_seconds * 1e3 << " ms";
  if (cut.request) StartWriter();
}

void ServerNode::ReleaseDeferred(zmq::socket_t& router) {
  for (auto& [routing_id, push] : cut_->deferred) {
    Message reply = store_->Handle(push);
    if (!routing_id.empty()) {
      SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
    } else if (reply.header.status_code() != 0) {
      LOG(ERROR) << "server " << server_id_.load()
                 << ": a held push failed when applied: " << reply.header.status_message();
    }
  }
  cut_->deferred.clear();
}

void ServerNode::StartWriter() {
  if (writer_.joinable()) writer_.join();
  Cut& cut = *cut_;
  auto capture = std::make_shared<StoreCapture>(std::move(cut.capture));
  proto::SnapshotReport report;
  report.set_version(cut.version);
  report.set_server(server_id_.load());
  for (const auto& c : cut.cuts) *report.add_cuts() = c;
  report.set_pause_seconds(cut.pause_seconds);
  report.set_window_seconds(cut.window_seconds);
  report.set_rows(capture->rows);
  report.set_evicted(capture->evicted);
  report.set_error(cut.error);
  writer_ =
      std::jthread([this, capture, request = *cut.request, report = std::move(report)]() mutable {
        const auto start = SteadyClock::now();
        model_store::ShardFileOptions options;
        options.encoding = request.encoding() == proto::Manifest::ENCODING_UNSPECIFIED
                               ? proto::Manifest::ENCODING_FLOAT32
                               : request.encoding();
        options.serving = request.serving();
        options.delta = request.parent_version() != 0;
        if (request.fail_after_bytes() > 0)
          options.writer.fail_after_bytes = request.fail_after_bytes();
        auto add = [&](const StatusOr<model_store::WrittenShardFile>& f) {
          if (!f.ok()) {
            if (report.error().empty()) report.set_error(f.status().ToString());
            return;
          }
          *report.add_files() = f->entry;
          report.add_file_dense(f->dense);
          report.add_file_dims(f->dim);
          report.add_file_state_floats(f->state_floats);
        };
        const bool failed = !report.error().empty();
        for (const model_store::SparseShard& shard : capture->sparse) {
          if (!failed && report.error().empty()) {
            add(model_store::WriteShardFile(request.temp_dir(), shard, options));
          }
        }
        for (const model_store::DenseSlice& slice : capture->dense) {
          if (!failed && report.error().empty()) {
            add(model_store::WriteShardFile(request.temp_dir(), slice, options));
          }
        }
        report.set_write_seconds(std::chrono::duration<double>(SteadyClock::now() - start).count());
        {
          MutexLock lock(&writer_mu_);
          written_ = std::move(report);
          spare_capture_ = std::move(capture);  // its memory serves the next capture
        }
        writer_waker_.Notify();
      });
}

void ServerNode::SendWrittenReport(SchedulerLink& link) {
  std::optional<proto::SnapshotReport> report;
  {
    MutexLock lock(&writer_mu_);
    report.swap(written_);
  }
  if (!report) return;
  if (!report->error().empty()) {
    versions_failed_.fetch_add(1);
    LOG(ERROR) << "server " << server_id_.load() << ": writing version " << report->version()
               << " failed: " << report->error();
  }
  if (cut_ && cut_->version == report->version()) cut_.reset();
  link.Send(proto::SNAPSHOT_DONE, report->SerializeAsString()).IgnoreError();
}

}  // namespace eddy::server
