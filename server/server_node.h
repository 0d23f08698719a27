// ServerNode: a server process's event loop. It binds a ROUTER socket, registers
// with the scheduler, creates its part of every table from the cluster view and
// answers data-plane requests until the scheduler says SHUTDOWN (or ABORT).
// Thread-safety: Run() on one thread; Stop() and the accessors from any thread.
#ifndef EDDY_SERVER_SERVER_NODE_H_
#define EDDY_SERVER_SERVER_NODE_H_

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
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

namespace eddy {
class SchedulerLink;
class Transport;
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
  // Opens the connection to the scheduler; nullptr: direct. Not owned; must
  // outlive the node.
  Transport* transport = nullptr;
};

struct ServerStats {
  uint64_t requests = 0;
  uint64_t versions_captured = 0;  // model versions whose state this server copied
  uint64_t versions_failed = 0;    // ... and could not write
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
  // Loads the version the cluster view names (resume).
  Status Resume(const proto::ClusterView& view);
  // Applies the staleness bound, then answers (or holds) one request.
  void Dispatch(zmq::socket_t& router, const std::string& routing_id, Message request);
  void Answer(zmq::socket_t& router, const std::string& routing_id, const Message& request);
  // Applies the summed pushes of every clock all workers have finished, then
  // answers the pulls that were waiting for them.
  void ApplyClosedClocksAndRelease(zmq::socket_t& router,
                                   std::vector<StalenessGate::Held> released);

  // Model versions (docs/protocol.md, "Model versions"). A version is cut by
  // markers: each worker sends CUT(v) to every server right after its last push
  // of a clock. Without per-clock aggregation the server copies its state once
  // every live worker's marker has arrived; a marked worker's later pushes are
  // acknowledged and held until then, so the copy holds exactly the pushes sent
  // before the markers. With aggregation (BSP) the copy is taken right after the
  // sum of clock C = the largest marker clock is applied, and every worker's
  // position is the one it reported with clock C.
  struct Cut {
    Cut();  // out of line: clang needs Cut complete for std::optional<Cut>
    uint64_t version = 0;
    std::vector<bool> marked;
    std::vector<int64_t> marker_clock;
    std::vector<uint64_t> marker_rows;
    int64_t target_clock = -1;  // aggregation: capture once clock target_clock is applied
    bool captured = false;
    std::optional<proto::SnapshotRequest> request;
    // Pushes of marked workers, held until the capture; a routing id is set
    // where the reply is still owed (PUSH_PULL).
    std::vector<std::pair<std::string, Message>> deferred;
    std::vector<proto::WorkerCut> cuts;
    StoreCapture capture;
    SteadyClock::time_point first_marker;
    double pause_seconds = 0;
    double window_seconds = 0;
    std::string error;  // the capture could not be taken
  };
  // The cut of `version`, started if new; nullptr for a marker or request of an
  // older version than the one in progress.
  Cut* CutFor(zmq::socket_t& router, uint64_t version);
  void OnMarker(zmq::socket_t& router, const Message& marker);
  void OnSnapshotRequest(zmq::socket_t& router, proto::SnapshotRequest request);
  // Captures when the cut is complete (or sets the clock to capture at).
  void MaybeCapture(zmq::socket_t& router);
  void Capture(zmq::socket_t& router, int64_t bsp_clock);
  // Applies (and answers) the pushes held for the cut.
  void ReleaseDeferred(zmq::socket_t& router);
  void StartWriter();
  // Sends the written version's report to the scheduler.
  void SendWrittenReport(SchedulerLink& link);
  bool HoldsPushesOf(int worker) const;
  // The position a worker reported with `clock`, if still known.
  std::optional<uint64_t> RowsAt(int worker, int64_t clock) const;

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
  // Per worker: (clock, stream position) of its latest CLOCK messages.
  std::vector<std::deque<std::pair<int64_t, uint64_t>>> worker_rows_;
  std::vector<bool> worker_lost_;
  std::optional<Cut> cut_;  // loop thread only
  std::map<uint64_t, uint32_t> capture_epochs_;  // version -> StoreCapture::epoch
  SchedulerLink* link_ = nullptr;                // during Serve()
  std::jthread writer_;     // writes one captured version's files
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
