// ServerNode: a server process's event loop. It binds a ROUTER socket, registers
// with the scheduler, creates its part of every table from the cluster view and
// answers data-plane requests until the scheduler says SHUTDOWN (or ABORT).
// Thread-safety: Run() on one thread; Stop() and the accessors from any thread.
#ifndef EDDY_SERVER_SERVER_NODE_H_
#define EDDY_SERVER_SERVER_NODE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <zmq.hpp>

#include "common/mutex.h"
#include "common/net.h"
#include "common/status.h"
#include "server/clock_aggregator.h"
#include "server/parameter_store.h"
#include "server/staleness_gate.h"

namespace eddy {
class SchedulerLink;
}  // namespace eddy

namespace eddy::server {

struct ServerOptions {
  std::string scheduler;                // tcp://host:port of the scheduler
  std::string bind_host = "127.0.0.1";  // interface for the data-plane socket
  int port = 0;                         // 0: ephemeral
  int num_threads = 2;                  // threads applying a request
  int requested_rank = -1;              // server id wanted (MPI launch), -1: any
  int64_t max_message_bytes = int64_t{1} << 30;
  std::chrono::milliseconds registration_timeout{120'000};
};

struct ServerStats {
  uint64_t requests = 0;
  uint64_t error_replies = 0;     // requests answered with an error status
  uint64_t dropped_messages = 0;  // frames that could not be parsed at all
};

class ServerNode {
 public:
  // `context` must outlive the node.
  ServerNode(zmq::context_t& context, ServerOptions options);
  ~ServerNode();
  ServerNode(const ServerNode&) = delete;
  ServerNode& operator=(const ServerNode&) = delete;

  // Serves until SHUTDOWN (OK), ABORT or loss of the scheduler (error), or Stop()
  // (Cancelled).
  Status Run();
  // Makes Run() return soon. Safe from any thread and before Run().
  void Stop();

  // Blocks until the server has its tables and serves requests (true), or the
  // timeout passes or Run() returned first (false).
  bool WaitUntilServing(std::chrono::milliseconds timeout);

  ServerStats stats() const;
  // The bound data-plane endpoint, once Run() has bound it (empty before).
  std::string endpoint() const;
  int server_id() const { return server_id_.load(); }

 private:
  Status RunInternal();
  Status Serve(zmq::socket_t& router, SchedulerLink& link);
  // Applies the staleness bound, then answers (or holds) one request.
  void Dispatch(zmq::socket_t& router, const std::string& routing_id, Message request);
  void Answer(zmq::socket_t& router, const std::string& routing_id, const Message& request);
  // Applies the summed pushes of every clock all workers have finished, then
  // answers the pulls that were waiting for them.
  void ApplyClosedClocksAndRelease(zmq::socket_t& router,
                                   std::vector<StalenessGate::Held> released);

  zmq::context_t& context_;
  ServerOptions options_;
  Waker stop_waker_;
  std::atomic<bool> stop_{false};
  std::atomic<int> server_id_{-1};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> refused_{0};       // error replies given outside the store (CLOCK)
  std::unique_ptr<ParameterStore> store_;  // created by Run() from the cluster view
  std::atomic<ParameterStore*> store_ptr_{nullptr};
  std::unique_ptr<StalenessGate> gate_;  // event-loop thread only
  // Set when pushes are applied per clock (--aggregate=sum|mean); loop thread only.
  std::unique_ptr<ClockAggregator> aggregator_;
  bool aggregate_mean_ = false;
  mutable Mutex mu_;
  CondVar serving_cv_;
  std::string endpoint_ GUARDED_BY(mu_);
  bool serving_ GUARDED_BY(mu_) = false;
  bool ended_ GUARDED_BY(mu_) = false;
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_SERVER_NODE_H_
