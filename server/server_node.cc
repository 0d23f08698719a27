#include "server/server_node.h"

#include <algorithm>

#include "common/event_loop.h"
#include "common/message.h"
#include "common/scheduler_link.h"
#include "model_store/shard_file.h"
#include "server/server_metrics.h"

namespace eddy::server {
namespace {

// Writes the captured files into the request's temporary directory, adding them
// (or the first error) to `report`. Runs on the writer thread.
void WriteFiles(const proto::SnapshotRequest& request, const StoreCapture& capture,
                proto::SnapshotReport* report) {
  const auto start = SteadyClock::now();
  model_store::ShardFileOptions options;
  options.encoding = request.encoding() == proto::Manifest::ENCODING_UNSPECIFIED
                         ? proto::Manifest::ENCODING_FLOAT32
                         : request.encoding();
  options.serving = request.serving();
  options.delta = request.parent_version() != 0;
  if (request.fail_after_bytes() > 0) options.writer.fail_after_bytes = request.fail_after_bytes();
  auto add = [&](const StatusOr<model_store::WrittenShardFile>& f) {
    if (!f.ok()) {
      if (report->error().empty()) report->set_error(f.status().ToString());
      return;
    }
    *report->add_files() = f->entry;
    report->add_file_dense(f->dense);
    report->add_file_dims(f->dim);
    report->add_file_state_floats(f->state_floats);
  };
  // Stops at the first error (or does not start after a failed capture).
  for (const model_store::SparseShard& shard : capture.sparse) {
    if (report->error().empty())
      add(model_store::WriteShardFile(request.temp_dir(), shard, options));
  }
  for (const model_store::DenseSlice& slice : capture.dense) {
    if (report->error().empty())
      add(model_store::WriteShardFile(request.temp_dir(), slice, options));
  }
  report->set_write_seconds(std::chrono::duration<double>(SteadyClock::now() - start).count());
}

}  // namespace

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

proto::ServerReport ServerNode::Report() const {
  const ServerStats s = stats();
  proto::ServerReport r;
  r.set_requests(s.requests);
  r.set_error_replies(s.error_replies);
  r.set_dropped_messages(s.dropped_messages);
  if (ParameterStore* store = store_ptr_.load()) {
    r.set_keys(store->stats().keys);
    store->AddSparseSummary(&r);
  }
  return r;
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
  link_options.heartbeat_payload = [this] { return Report().SerializeAsString(); };
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
  if (options_.metrics != nullptr) {
    metrics_ = std::make_unique<ServerMetrics>(options_.metrics, view.your_id(),
                                               [this] { return Report(); });
  }
  if (view.resume_version() > 0) {
    RETURN_IF_ERROR(Resume(view).WithContext(
        "server " + std::to_string(view.your_id()) + ": resuming from version " +
        std::to_string(view.resume_version()) + " of " + view.resume_root()));
  }
  num_workers_ = view.workers_size();
  staleness_ = view.staleness();
  epoch_ = view.epoch();
  if (view.aggregate() == "sum" || view.aggregate() == "mean") {
    aggregate_mean_ = view.aggregate() == "mean";
    per_clock_ = true;
  }
  ResetEpochState();
  {
    MutexLock lock(&mu_);
    serving_ = true;
  }
  serving_cv_.NotifyAll();
  if (epoch_ > 0) {
    // A replacement during a recovery: it has loaded the version it was given.
    RETURN_IF_ERROR(link.Send(proto::RECOVERED, {}, {}, static_cast<int64_t>(epoch_)));
  }
  LOG(INFO) << "server " << view.your_id() << " serving " << view.tables_size() << " table(s) at "
            << advertised;
  return Serve(router, link);
}

Status ServerNode::Resume(const proto::ClusterView& view) {
  ASSIGN_OR_RETURN(LoadedVersion loaded,
                   store_->LoadVersion(view.resume_root(), view.resume_version()));
  LOG(INFO) << "server " << view.your_id() << " restored version " << view.resume_version()
            << " (chain of " << loaded.chain.size() << ", " << loaded.rows << " rows from "
            << loaded.files << " files, " << loaded.bytes / 1e6 << " MB) in " << loaded.seconds
            << " s (" << loaded.rows_read / std::max(loaded.seconds, 1e-9) / 1e6
            << " M rows/s read)";
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
  if (metrics_ != nullptr) {
    metrics_->OnReply(reply.header.ByteSizeLong() + reply.keys.size() + reply.values.size());
  }
  Status sent = SendMessage(router, reply, routing_id, /*dont_wait=*/true);
  if (!sent.ok()) VLOG(1) << "reply not sent: " << sent;
}

void ServerNode::CountRefused(std::string_view what) {
  uint64_t n = refused_.fetch_add(1) + 1;
  if (n <= 10 || n % 1000 == 0) {
    LOG(WARNING) << "server " << server_id_.load() << ": " << what << " (" << n << " so far)";
  }
}

void ServerNode::ResetEpochState() {
  gate_ = std::make_unique<StalenessGate>(num_workers_, staleness_);
  aggregator_ = per_clock_ ? std::make_unique<ClockAggregator>() : nullptr;
  version_cut_ = std::make_unique<VersionCut>(num_workers_, per_clock_);
}

Status ServerNode::Recover(const proto::RecoveryRequest& request) {
  const auto started = SteadyClock::now();
  epoch_ = request.epoch();
  // Held pulls, clock sums and held pushes belong to the old epoch: their
  // senders were told to drop them.
  ResetEpochState();
  if (request.version() == 0) {
    // Lost before the job's first version: back to the initial state.
    RETURN_IF_ERROR(store_->ResetToInitial());
    LOG(INFO) << "server " << server_id_.load() << ": recovery epoch " << epoch_
              << ": back to the initial state (no version yet)";
    return OkStatus();
  }
  ASSIGN_OR_RETURN(LoadedVersion loaded, store_->LoadVersion(request.root(), request.version()));
  LOG(INFO) << "server " << server_id_.load() << ": recovery epoch " << epoch_
            << ": rolled back to version " << request.version() << " (" << loaded.rows
            << " rows) in " << std::chrono::duration<double>(SteadyClock::now() - started).count()
            << " s";
  return OkStatus();
}

void ServerNode::Dispatch(zmq::socket_t& router, const std::string& routing_id, Message request) {
  const proto::MsgType type = request.header.type();
  if (request.header.epoch() != epoch_) {
    // Sent before a recovery the sender has not seen yet (or after it, by a
    // sender that has and this server not yet): never applied.
    uint64_t n = stale_epoch_.fetch_add(1) + 1;
    if (n <= 10 || n % 1000 == 0) {
      LOG(WARNING) << "server " << server_id_.load() << ": refused a " << MsgTypeName(type)
                   << " of epoch " << request.header.epoch() << " in epoch " << epoch_ << " ("
                   << n << " so far)";
    }
    if (type != proto::CUT) {
      Message reply{MakeHeader(proto::REPLY, request.header.request_id()), {}, {}};
      SetStatus(AbortedError("recovery: epoch " + std::to_string(request.header.epoch()) +
                             " is over (server epoch " + std::to_string(epoch_) + ")"),
                &reply.header);
      SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
    }
    return;
  }
  if (type == proto::CUT) {
    OnMarker(router, request);
    return;
  }
  if (type == proto::CLOCK) {
    OnClock(router, routing_id, request);
    return;
  }
  if ((type == proto::PUSH || type == proto::PUSH_DENSE || type == proto::PUSH_PULL) &&
      TakePush(router, routing_id, request)) {
    return;
  }
  const bool is_pull = type == proto::PULL || type == proto::PUSH_PULL || type == proto::PULL_DENSE;
  if (is_pull && !gate_->Admits(request.header.clock())) {
    gate_->Hold(routing_id, std::move(request));
    return;
  }
  Answer(router, routing_id, request);
}

void ServerNode::OnClock(zmq::socket_t& router, const std::string& routing_id,
                         const Message& request) {
  version_cut_->OnClock(request.header.sender(), request.header.clock(),
                        StreamPoint(request.header.offset(), request.header.stream_state()));
  Message reply{MakeHeader(proto::REPLY, request.header.request_id()), {}, {}};
  StatusOr<std::vector<StalenessGate::Held>> released =
      gate_->Advance(request.header.sender(), request.header.clock());
  if (!released.ok()) {
    SetStatus(released.status(), &reply.header);
    CountRefused("refused a CLOCK: " + released.status().message());
  }
  SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
  if (released.ok()) ApplyClosedClocksAndRelease(router, std::move(released).value());
}

bool ServerNode::TakePush(zmq::socket_t& router, const std::string& routing_id, Message& request) {
  const proto::MsgType type = request.header.type();
  if (aggregator_ && type != proto::PUSH_PULL) {
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
    return true;
  }
  if (aggregator_) {
    Message reply{MakeHeader(proto::REPLY, request.header.request_id()), {}, {}};
    SetStatus(FailedPreconditionError("PushPull cannot be used when pushes are applied per clock "
                                      "(--aggregate): push, Clock(), then pull"),
              &reply.header);
    refused_.fetch_add(1);
    SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
    return true;
  }
  if (!version_cut_->HoldsPushesOf(request.header.sender())) return false;
  // After this worker's marker: belongs to the next version. Acknowledged now
  // (PUSH_PULL: answered with its values later), applied right after the capture.
  Message reply = store_->Handle(request, /*apply=*/false);
  if (reply.header.status_code() != 0 || type != proto::PUSH_PULL) {
    SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
  }
  if (reply.header.status_code() == 0) {
    version_cut_->Hold(type == proto::PUSH_PULL ? routing_id : std::string(), std::move(request));
  }
  return true;
}

void ServerNode::ApplySumsBefore(int64_t clock) {
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
}

void ServerNode::ApplyClosedClocksAndRelease(zmq::socket_t& router,
                                             std::vector<StalenessGate::Held> released) {
  if (aggregator_) {
    // A version waiting for a clock is copied right after that clock's sum.
    Perform(router, version_cut_->OnClocksClosed(gate_->min_clock()));
    ApplySumsBefore(gate_->min_clock());
  }
  for (StalenessGate::Held& held : released) Answer(router, held.routing_id, held.request);
}

Status ServerNode::Serve(zmq::socket_t& router, SchedulerLink& link) {
  link_ = &link;
  if (stop_.load()) return CancelledError("server stopped");
  EventLoop loop;
  loop.AddWaker(stop_waker_, [&] {
    if (stop_.load()) loop.Exit(CancelledError("server stopped"));
  });
  loop.AddWaker(writer_waker_, [&] { SendWrittenReport(link); });
  loop.AddSocket(link.socket(), [&] {
    if (std::optional<Status> end = OnControl(router, link)) loop.Exit(*end);
  });
  // Serve what is queued, but come back to the control socket now and then.
  loop.AddSocket(
      router, [&] { ServeOne(router); }, /*max_per_round=*/64);
  loop.AddTicker([&](SteadyClock::time_point now) -> StatusOr<SteadyClock::time_point> {
    RETURN_IF_ERROR(link.Tick(now));
    return link.next_tick();
  });
  return loop.Run();
}

std::optional<Status> ServerNode::OnControl(zmq::socket_t& router, SchedulerLink& link) {
  StatusOr<Message> msg = link.Receive();
  if (!msg.ok()) {
    LOG(WARNING) << "bad control message from the scheduler: " << msg.status();
    return std::nullopt;
  }
  switch (msg->header.type()) {
    case proto::SHUTDOWN:
      LOG(INFO) << "server " << server_id_.load() << ": shutdown requested by the scheduler";
      return OkStatus();
    case proto::ABORT:
      return AbortedError("job aborted by the scheduler: " + msg->header.status_message());
    case proto::NODE_LEFT: {
      const int w = msg->header.sender();
      LOG(WARNING) << "server " << server_id_.load() << ": worker " << w
                   << " was lost; it no longer counts toward the staleness bound";
      ApplyClosedClocksAndRelease(router, gate_->RemoveWorker(w));
      Perform(router, version_cut_->OnWorkerLost(w));
      break;
    }
    case proto::RECOVER: {
      proto::RecoveryRequest request;
      if (!request.ParseFromString(msg->header.payload()) || request.epoch() == 0) {
        LOG(WARNING) << "server " << server_id_.load() << ": ignored a malformed RECOVER";
        break;
      }
      Status recovered = Recover(request);
      if (!recovered.ok()) {
        return recovered.WithContext("server " + std::to_string(server_id_.load()) +
                                     ": recovery to version " + std::to_string(request.version()));
      }
      Status sent = link.Send(proto::RECOVERED, {}, {}, static_cast<int64_t>(epoch_));
      if (!sent.ok()) LOG(WARNING) << "server " << server_id_.load() << ": " << sent;
      break;
    }
    case proto::SNAPSHOT: {
      proto::SnapshotRequest request;
      if (!request.ParseFromString(msg->header.payload()) || request.version() == 0) {
        LOG(WARNING) << "server " << server_id_.load() << ": ignored a malformed SNAPSHOT";
        break;
      }
      const uint64_t version = request.version();
      VersionCut::Step step = version_cut_->OnRequest(std::move(request), SteadyClock::now());
      if (!step.ignored.empty()) {
        LOG(WARNING) << "server " << server_id_.load() << ": ignored SNAPSHOT of version "
                     << version << " (" << step.ignored << ")";
      }
      Perform(router, std::move(step));
      break;
    }
    default:
      break;
  }
  return std::nullopt;
}

void ServerNode::ServeOne(zmq::socket_t& router) {
  std::string routing_id;
  StatusOr<Message> request = RecvMessage(router, &routing_id);
  if (request.ok()) {
    if (metrics_ == nullptr) {
      Dispatch(router, routing_id, std::move(request).value());
      return;
    }
    const auto started = SteadyClock::now();
    const proto::MsgType type = request->header.type();
    const size_t bytes =
        request->header.ByteSizeLong() + request->keys.size() + request->values.size();
    const size_t keys = request->keys.size() / sizeof(uint64_t);
    Dispatch(router, routing_id, std::move(request).value());
    metrics_->OnRequest(type, bytes, keys,
                        std::chrono::duration<double>(SteadyClock::now() - started).count());
    return;
  }
  uint64_t n = dropped_.fetch_add(1) + 1;
  if (n <= 10 || n % 1000 == 0) {
    LOG(WARNING) << "server " << server_id_.load() << ": dropped a message it cannot parse (" << n
                 << " so far): " << request.status();
  }
  if (request.status().code() == StatusCode::kFailedPrecondition && !routing_id.empty()) {
    Message reply{MakeHeader(proto::REPLY), {}, {}};
    SetStatus(request.status(), &reply.header);
    SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
  }
}

void ServerNode::OnMarker(zmq::socket_t& router, const Message& marker) {
  StatusOr<VersionCut::Step> step = version_cut_->OnMarker(
      marker.header.sender(), marker.header.version(), marker.header.clock(),
      StreamPoint(marker.header.offset(), marker.header.stream_state()), SteadyClock::now());
  if (!step.ok()) {
    CountRefused(step.status().message());
    return;
  }
  if (!step->ignored.empty()) VLOG(1) << "server " << server_id_.load() << ": " << step->ignored;
  Perform(router, std::move(step).value());
}

void ServerNode::Perform(zmq::socket_t& router, VersionCut::Step step) {
  if (step.abandoned != 0) {
    LOG(WARNING) << "server " << server_id_.load() << ": version " << step.abandoned
                 << " abandoned for version " << version_cut_->version();
  }
  ApplyHeld(router, std::move(step.release));
  if (step.send_ready) {
    Status ready =
        link_->Send(proto::SNAPSHOT_READY, {}, {}, static_cast<int64_t>(version_cut_->version()));
    if (!ready.ok()) LOG(WARNING) << "server " << server_id_.load() << ": " << ready;
  }
  if (step.capture) Capture(router, step.bsp_clock);
}

void ServerNode::Capture(zmq::socket_t& router, int64_t bsp_clock) {
  // Pushes of batch k carry clock k - 1: this applies clocks 1..bsp_clock (a
  // no-op when they closed before the cut was complete).
  if (aggregator_ && bsp_clock >= 0) ApplySumsBefore(bsp_clock);
  const auto start = SteadyClock::now();
  const proto::SnapshotRequest& request = *version_cut_->request();
  StatusOr<uint32_t> since = version_cut_->SinceEpoch();
  StatusOr<uint32_t> epoch = since;  // the error, or replaced by the copy's epoch
  if (since.ok()) {
    {
      // The previous version's buffers, once written, hold this copy.
      MutexLock lock(&writer_mu_);
      if (spare_capture_) capture_ = std::move(*spare_capture_);
      spare_capture_.reset();
    }
    store_->CaptureInto(*since, request.evict_after_versions(), &capture_);
    epoch = capture_.epoch;
  }
  ApplyHeld(router, version_cut_->Captured(SteadyClock::now(), std::move(epoch)));
  const double pause = std::chrono::duration<double>(SteadyClock::now() - start).count();
  versions_captured_.fetch_add(1);
  VLOG(1) << "server " << server_id_.load() << ": captured version " << version_cut_->version()
          << " (" << capture_.rows << " rows) in " << pause * 1e3 << " ms";
  StartWriter(pause);
}

void ServerNode::ApplyHeld(zmq::socket_t& router, std::vector<VersionCut::Held> held) {
  for (auto& [routing_id, push] : held) {
    Message reply = store_->Handle(push);
    if (!routing_id.empty()) {
      SendMessage(router, reply, routing_id, /*dont_wait=*/true).IgnoreError();
    } else if (reply.header.status_code() != 0) {
      LOG(ERROR) << "server " << server_id_.load()
                 << ": a held push failed when applied: " << reply.header.status_message();
    }
  }
}

void ServerNode::StartWriter(double pause_seconds) {
  if (writer_.joinable()) writer_.join();
  auto capture = std::make_shared<StoreCapture>(std::move(capture_));
  capture_ = StoreCapture();
  proto::SnapshotReport report = version_cut_->Report(pause_seconds);
  report.set_server(server_id_.load());
  report.set_rows(capture->rows);
  report.set_evicted(capture->evicted);
  writer_ = std::jthread(
      [this, capture, request = *version_cut_->request(), report = std::move(report)]() mutable {
        WriteFiles(request, *capture, &report);
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
  version_cut_->Written(report->version());
  link.Send(proto::SNAPSHOT_DONE, report->SerializeAsString()).IgnoreError();
}

}  // namespace eddy::server
