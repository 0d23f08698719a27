// ServerNode: a server process's event loop. It binds a ROUTER socket, registers
// with the scheduler, creates its part of every table from the cluster view and
// answers data-plane requests until the scheduler says SHUTDOWN (or ABORT).
// Thread-safety: Run() on one thread; Stop() and the accessors from any thread.
#ifndef EDDY_SERVER_SERVER_NODE_H_
#define EDDY_SERVER_SERVER_NODE_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>
#include <zmq.hpp>

#include "common/mutex.h"
#include "common/net.h"
#include "common/status.h"
#include "server/clock_aggregator.h"
#include "server/parameter_store.h"
#include "server/staleness_gate.h"
#include "server/version_cut.h"

namespace eddy {
class MetricsRegistry;
class SchedulerLink;
class Transport;
}  // namespace eddy

namespace eddy::server {

class ServerMetrics;

struct ServerOptions {
  std::string scheduler;                // tcp://host:port of the scheduler
  std::string bind_host = "127.0.0.1";  // interface for the data-plane socket
  int port = 0;                         // 0: ephemeral
  int num_threads = 2;                  // threads applying a request
  int requested_rank = -1;              // server id wanted (MPI launch), -1: any
  int64_t max_message_bytes = int64_t{1} << 30;
  std::chrono::milliseconds registration_timeout{120'000};
  // Opens the connection to the scheduler; nullptr: direct. Not owned; must
  // outlive the node.
  Transport* transport = nullptr;
  // Prometheus metrics (server/server_metrics.h) go here; nullptr: none. Not
  // owned; must outlive the node.
  MetricsRegistry* metrics = nullptr;
};

struct ServerStats {
  uint64_t requests = 0;
  uint64_t versions_captured = 0;  // model versions whose state this server copied
  uint64_t versions_failed = 0;    // ... and could not write
  uint64_t error_replies = 0;      // requests answered with an error status
  uint64_t dropped_messages = 0;   // frames that could not be parsed at all
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
  // The counters sent to the scheduler with every heartbeat. Thread-safe.
  proto::ServerReport Report() const;
  // The bound data-plane endpoint, once Run() has bound it (empty before).
  std::string endpoint() const;
  int server_id() const { return server_id_.load(); }

 private:
  Status RunInternal();
  Status Serve(zmq::socket_t& router, SchedulerLink& link);
  // Loads the version the cluster view names (resume).
  Status Resume(const proto::ClusterView& view);
  // Rebuilds the staleness gate, clock sums and version cut (a new epoch).
  void ResetEpochState();
  // RECOVER: the new epoch; drops the old epoch's state and loads the version.
  Status Recover(const proto::RecoveryRequest& request);
  // Applies the staleness bound, then answers (or holds) one request.
  void Dispatch(zmq::socket_t& router, const std::string& routing_id, Message request);
  void Answer(zmq::socket_t& router, const std::string& routing_id, const Message& request);
  void OnClock(zmq::socket_t& router, const std::string& routing_id, const Message& request);
  // Handles a push that is not applied at once (summed per clock, held for the
  // next version, or refused); false when it is an ordinary push.
  bool TakePush(zmq::socket_t& router, const std::string& routing_id, Message& request);
  // Applies the summed pushes of every clock before `clock`.
  void ApplySumsBefore(int64_t clock);
  // Applies the summed pushes of every clock all workers have finished, then
  // answers the pulls that were waiting for them.
  void ApplyClosedClocksAndRelease(zmq::socket_t& router,
                                   std::vector<StalenessGate::Held> released);
  // One message from the scheduler; a value when Serve() must return it.
  std::optional<Status> OnControl(zmq::socket_t& router, SchedulerLink& link);
  // Receives and dispatches one request (a malformed one is counted and dropped).
  void ServeOne(zmq::socket_t& router);
  void CountRefused(std::string_view what);

  // Model versions (docs/protocol.md, "Model versions"): version_cut_ decides,
  // these perform what it asks for.
  void OnMarker(zmq::socket_t& router, const Message& marker);
  void Perform(zmq::socket_t& router, VersionCut::Step step);
  // Copies the store for the open version (after the sums before `bsp_clock`),
  // applies the held pushes and starts the writer.
  void Capture(zmq::socket_t& router, int64_t bsp_clock);
  // Applies (and answers, where owed) held pushes.
  void ApplyHeld(zmq::socket_t& router, std::vector<VersionCut::Held> held);
  void StartWriter(double pause_seconds);
  // Sends the written version's report to the scheduler.
  void SendWrittenReport(SchedulerLink& link);

  zmq::context_t& context_;
  ServerOptions options_;
  Waker stop_waker_;
  std::atomic<bool> stop_{false};
  std::atomic<int> server_id_{-1};
  std::atomic<uint64_t> dropped_{0};
  std::atomic<uint64_t> refused_{0};       // error replies given outside the store (CLOCK)
  std::unique_ptr<ParameterStore> store_;  // created by Run() from the cluster view
  std::unique_ptr<ServerMetrics> metrics_;  // with options_.metrics, once the id is known
  std::atomic<ParameterStore*> store_ptr_{nullptr};
  std::unique_ptr<StalenessGate> gate_;  // event-loop thread only
  // Set when pushes are applied per clock (--aggregate=sum|mean); loop thread only.
  std::unique_ptr<ClockAggregator> aggregator_;
  bool aggregate_mean_ = false;
  std::unique_ptr<VersionCut> version_cut_;
  // Recovery (loop thread only): the epoch data-plane messages must carry, and
  // what the per-epoch state is rebuilt from.
  uint32_t epoch_ = 0;
  int num_workers_ = 0;
  int staleness_ = -1;
  bool per_clock_ = false;
  std::atomic<uint64_t> stale_epoch_{0};  // messages of another epoch refused  // loop thread only
  StoreCapture capture_;                     // the copy being taken, loop thread only
  SchedulerLink* link_ = nullptr;            // during Serve()
  std::jthread writer_;                      // writes one captured version's files
  Waker writer_waker_;
  Mutex writer_mu_;
  std::optional<proto::SnapshotReport> written_ GUARDED_BY(writer_mu_);
  // A written capture whose memory the next capture reuses.
  std::shared_ptr<StoreCapture> spare_capture_ GUARDED_BY(writer_mu_);
  std::atomic<uint64_t> versions_captured_{0};
  std::atomic<uint64_t> versions_failed_{0};
  mutable Mutex mu_;
  CondVar serving_cv_;
  std::string endpoint_ GUARDED_BY(mu_);
  bool serving_ GUARDED_BY(mu_) = false;
  bool ended_ GUARDED_BY(mu_) = false;
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_SERVER_NODE_H_
