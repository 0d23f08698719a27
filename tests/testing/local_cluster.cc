#include "tests/testing/local_cluster.h"

#include "common/table_config.h"
#include "tests/testing/fault_transport.h"

namespace eddy::testing {

StatusOr<std::unique_ptr<LocalCluster>> LocalCluster::Start(const LocalClusterOptions& options) {
  std::unique_ptr<LocalCluster> c(new LocalCluster());
  c->transport_ = options.transport;
  scheduler::SchedulerOptions so;
  so.num_servers = options.num_servers;
  so.num_workers = options.num_workers;
  if (options.table_configs.empty()) {
    ASSIGN_OR_RETURN(so.tables, ParseTableSpecs(options.tables));
  } else {
    so.tables = options.table_configs;
  }
  so.heartbeat_interval = options.heartbeat_interval;
  so.node_timeout = options.node_timeout;
  so.registration_timeout = std::chrono::seconds(30);
  so.server_shards = options.server_shards;
  so.max_request_keys = options.max_request_keys;
  so.staleness = options.staleness;
  so.tolerate_worker_failures = options.tolerate_worker_failures;
  so.aggregate = options.aggregate;
  so.on_progress = options.on_progress;
  so.progress_interval = options.progress_interval;
  so.max_metrics_bytes = options.max_metrics_bytes;
  if (options.configure_scheduler) options.configure_scheduler(&so);
  c->scheduler_ = std::make_unique<scheduler::SchedulerNode>(c->context_, so);
  ASSIGN_OR_RETURN(c->endpoint_, c->scheduler_->Bind());
  c->threads_.emplace_back([raw = c.get()] { raw->scheduler_status_ = raw->scheduler_->Run(); });

  server::ServerOptions server_options;
  server_options.scheduler = c->endpoint_;
  server_options.num_threads = options.server_threads;
  server_options.registration_timeout = std::chrono::seconds(30);
  server_options.transport = options.transport;
  c->server_status_.resize(options.num_servers);
  for (int i = 0; i < options.num_servers; ++i) {
    server_options.requested_rank = i;
    c->servers_.push_back(std::make_unique<server::ServerNode>(c->context_, server_options));
  }
  for (int i = 0; i < options.num_servers; ++i) {
    c->threads_.emplace_back(
        [raw = c.get(), i] { raw->server_status_[i] = raw->servers_[i]->Run(); });
  }
  // Clients register concurrently: registration completes only when all have joined.
  worker::ClientOptions client_options;
  client_options.scheduler = c->endpoint_;
  client_options.request_timeout = options.request_timeout;
  client_options.registration_timeout = std::chrono::seconds(30);
  client_options.transport = options.transport;
  std::vector<StatusOr<std::unique_ptr<worker::Client>>> connected;
  for (int i = 0; i < options.num_workers; ++i) connected.emplace_back(CancelledError("not run"));
  {
    std::vector<std::jthread> joiners;
    for (int i = 0; i < options.num_workers; ++i) {
      joiners.emplace_back([&, i] {
        worker::ClientOptions o = client_options;
        o.requested_rank = i;
        connected[i] = worker::Client::Connect(c->context_, o);
      });
    }
  }
  for (auto& client : connected) {
    if (!client.ok()) return client.status();
    c->clients_.push_back(std::move(client).value());
  }
  for (auto& server : c->servers_) {
    if (!server->WaitUntilServing(std::chrono::seconds(30)))
      return UnavailableError("a server did not start");
  }
  return c;
}

Status LocalCluster::Shutdown() {
  if (shut_down_) return scheduler_status_;
  std::vector<Status> finished(clients_.size());
  {
    std::vector<std::jthread> finishers;
    for (size_t i = 0; i < clients_.size(); ++i) {
      if (clients_[i]) finishers.emplace_back([&, i] { finished[i] = clients_[i]->Finish(""); });
    }
  }
  threads_.clear();  // joins the scheduler and the servers
  shut_down_ = true;
  RETURN_IF_ERROR(scheduler_status_);
  for (const Status& s : server_status_) RETURN_IF_ERROR(s);
  for (const Status& s : finished) RETURN_IF_ERROR(s);
  return OkStatus();
}

LocalCluster::~LocalCluster() {
  if (!shut_down_) {
    if (scheduler_) scheduler_->Stop();
    for (auto& s : servers_) s->Stop();
  }
  threads_.clear();
  clients_.clear();
}

}  // namespace eddy::testing
