// LocalCluster: a whole Eddy cluster — scheduler, servers and worker clients — as
// threads of the test process over loopback TCP on ephemeral ports (optionally
// through a FaultTransport's relays); the test drives the workers' clients.
// Thread-safety: create, use and destroy from the test thread; the clients
// themselves are thread-safe.
#ifndef EDDY_TESTS_TESTING_LOCAL_CLUSTER_H_
#define EDDY_TESTS_TESTING_LOCAL_CLUSTER_H_

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/status.h"
#include "scheduler/scheduler_node.h"
#include "server/server_node.h"
#include "worker/client.h"

namespace eddy::testing {

class FaultTransport;

struct LocalClusterOptions {
  int num_servers = 2;
  int num_workers = 2;
  std::string tables = "emb:dim=4,opt=sgd,lr=1";
  // When not empty, used instead of `tables`.
  std::vector<proto::TableConfig> table_configs;
  int server_threads = 2;
  uint32_t server_shards = 16;
  uint64_t max_request_keys = 1 << 20;
  std::chrono::milliseconds heartbeat_interval{200};
  std::chrono::milliseconds node_timeout{5000};
  std::chrono::milliseconds request_timeout{20'000};
  int staleness = -1;
  bool tolerate_worker_failures = false;
  std::string aggregate = "none";
  // The scheduler's live-metrics callback (runs on its event-loop thread).
  std::function<void(const scheduler::ProgressInputs& inputs, bool final)> on_progress;
  std::chrono::milliseconds progress_interval{1000};
  uint64_t max_metrics_bytes = uint64_t{16} << 20;
  // Last say on the scheduler's options (model versions, resume, ...).
  std::function<void(scheduler::SchedulerOptions*)> configure_scheduler;
  // When set, every server's and worker's outgoing connection goes through it,
  // so the test can cut, drop or delay them. Not owned; must outlive the cluster.
  FaultTransport* transport = nullptr;
};

class LocalCluster {
 public:
  static StatusOr<std::unique_ptr<LocalCluster>> Start(const LocalClusterOptions& options);
  ~LocalCluster();
  LocalCluster(const LocalCluster&) = delete;
  LocalCluster& operator=(const LocalCluster&) = delete;

  worker::Client& client(int i) { return *clients_[i]; }
  server::ServerNode& server(int i) { return *servers_[i]; }
  scheduler::SchedulerNode& scheduler() { return *scheduler_; }
  int num_servers() const { return static_cast<int>(servers_.size()); }
  int num_workers() const { return static_cast<int>(clients_.size()); }
  const std::string& scheduler_endpoint() const { return endpoint_; }
  zmq::context_t& context() { return context_; }
  // LocalClusterOptions::transport (nullptr: direct connections).
  FaultTransport* transport() const { return transport_; }

  // Destroys worker i's client without finishing: it stops heartbeating, as if
  // its process had died.
  void LoseWorker(int i) { clients_[i].reset(); }

  // Finishes every remaining worker and waits until the scheduler and the servers have
  // ended; returns the first error among them.
  Status Shutdown();

 private:
  LocalCluster() = default;

  zmq::context_t context_;
  std::string endpoint_;
  FaultTransport* transport_ = nullptr;
  std::unique_ptr<scheduler::SchedulerNode> scheduler_;
  std::vector<std::unique_ptr<server::ServerNode>> servers_;
  std::vector<std::unique_ptr<worker::Client>> clients_;
  Status scheduler_status_;
  std::vector<Status> server_status_;
  std::vector<std::jthread> threads_;
  bool shut_down_ = false;
};

}  // namespace eddy::testing

#endif  // EDDY_TESTS_TESTING_LOCAL_CLUSTER_H_
