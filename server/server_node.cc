#include "server/server_node.h"

#include "common/message.h"
#include "common/scheduler_link.h"

namespace eddy::server {

ServerNode::ServerNode(zmq::context_t& context, ServerOptions options)
    : context_(context), options_(std::move(options)) {}

ServerNode::~ServerNode() = default;

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
  gate_ = std::make_unique<StalenessGate>(view.workers_size(), view.staleness());
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
  if (type == proto::CLOCK) {
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
    const int live = std::max(1, gate_->live_workers());
    const float scale = aggregate_mean_ ? 1.0f / static_cast<float>(live) : 1.0f;
    for (const Message& push : aggregator_->TakeBefore(gate_->min_clock(), scale)) {
      Message reply = store_->Handle(push);
      if (reply.header.status_code() != 0) {
        LOG(ERROR) << "server " << server_id_.load() << ": applying the sum of clock "
                   << push.header.clock() << " failed: " << reply.header.status_message();
      }
    }
  }
  for (StalenessGate::Held& held : released) Answer(router, held.routing_id, held.request);
}

Status ServerNode::Serve(zmq::socket_t& router, SchedulerLink& link) {
  std::string routing_id;
  while (true) {
    if (stop_.load()) return CancelledError("server stopped");
    zmq::pollitem_t items[3] = {{router.handle(), 0, ZMQ_POLLIN, 0},
                                {link.socket().handle(), 0, ZMQ_POLLIN, 0},
                                {nullptr, stop_waker_.fd(), ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 3, std::chrono::milliseconds(PollTimeoutMs(link.next_tick(), 1000)));
    } catch (const zmq::error_t& e) {
      return UnavailableError(std::string("poll failed: ") + e.what());
    }
    if (items[2].revents & ZMQ_POLLIN) stop_waker_.Drain();
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
        ApplyClosedClocksAndRelease(router, gate_->RemoveWorker(msg->header.sender()));
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

}  // namespace eddy::server
