// SchedulerNode: the job's coordinator. Servers and workers register with it; once
// every expected node has joined it sends each the cluster view (ids, server
// endpoints, table definitions). It watches heartbeats — a node silent for longer
// than node_timeout is named in an error and the job is aborted — runs barriers,
// collects the workers' live metrics and final reports and ends the job with
// SHUTDOWN.
// Thread-safety: Bind() then Run() on one thread; Stop() and the accessors from
// any thread.
#ifndef EDDY_SCHEDULER_SCHEDULER_NODE_H_
#define EDDY_SCHEDULER_SCHEDULER_NODE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/mutex.h"
#include "common/net.h"
#include "common/proto/eddy.pb.h"
#include "common/status.h"

namespace eddy::scheduler {

struct SchedulerOptions {
  std::string bind_host = "127.0.0.1";
  int port = 0;  // 0: ephemeral
  int num_servers = 1;
  int num_workers = 1;
  std::vector<proto::TableConfig> tables;
  std::chrono::milliseconds heartbeat_interval{1000};
  std::chrono::milliseconds node_timeout{10'000};
  std::chrono::milliseconds registration_timeout{120'000};
  uint32_t server_shards = 64;
  uint64_t max_request_keys = 1 << 24;
  // Staleness bound: a pull at clock c waits until every worker finished clock
  // c - staleness. -1: never waits (asynchronous).
  int staleness = -1;
  // When a worker is lost: false ends the job (the default); true goes on with
  // the live workers (servers stop waiting for it under a staleness bound).
  bool tolerate_worker_failures = false;
  // How servers apply pushes: "none" at once; "sum" or "mean": all workers'
  // gradients of a clock together once every worker finished it (requires
  // staleness 0, so that pulls wait for it).
  std::string aggregate = "none";
  // Live metrics: called on the scheduler's event-loop thread with the latest
  // METRICS payload of every worker (by worker id; empty when none yet), about
  // every progress_interval while the cluster is up, and once more with
  // final = true when every worker has finished, just before Run() returns OK
  // (not when the job fails). Must be short: heartbeats wait for it. May be empty.
  std::function<void(const std::vector<std::string>& latest_metrics, bool final)> on_progress;
  std::chrono::milliseconds progress_interval{1000};
  // METRICS payloads larger than this are dropped (counted and logged).
  uint64_t max_metrics_bytes = uint64_t{16} << 20;
};

// What the scheduler dropped or accepted of the workers' live metrics.
struct SchedulerStats {
  uint64_t metrics_received = 0;   // METRICS payloads kept as a worker's latest
  uint64_t metrics_ignored = 0;    // from an unregistered sender, a server or a lost worker
  uint64_t metrics_oversized = 0;  // larger than max_metrics_bytes
};

// Checks the options (counts, timeouts, tables) and says what to change.
Status ValidateSchedulerOptions(const SchedulerOptions& options);

class SchedulerNode {
 public:
  // `context` must outlive the node.
  SchedulerNode(zmq::context_t& context, SchedulerOptions options);
  ~SchedulerNode();
  SchedulerNode(const SchedulerNode&) = delete;
  SchedulerNode& operator=(const SchedulerNode&) = delete;

  // Binds the control socket; returns the endpoint nodes connect to.
  StatusOr<std::string> Bind();
  // Runs the job: OK once every worker has finished and SHUTDOWN was sent;
  // an error naming the node when one is lost, a registration timeout, or Stop().
  Status Run();
  void Stop();

  // The workers' final reports, by worker id (after Run() returned OK).
  std::vector<std::string> worker_reports() const;
  // The latest METRICS payload of each worker, by worker id; empty when none has
  // come yet. A lost worker keeps its last one.
  std::vector<std::string> latest_metrics() const;
  SchedulerStats stats() const;

 private:
  struct Node {
    proto::Role role = proto::ROLE_UNKNOWN;
    int id = -1;
    proto::NodeInfo info;
    std::string routing_id;
    SteadyClock::time_point last_seen;
    bool done = false;
    bool lost = false;  // stopped answering; tolerated (workers only)
    std::string report;
    std::string Name() const;
  };

  void OnRegister(const std::string& routing_id, const proto::Header& header);
  void SendViews();
  int LiveWorkers() const;
  // After a worker finished or was lost: releases complete barriers; returns
  // true when every live worker has finished.
  void ReleaseCompleteBarriers();
  bool AllLiveWorkersDone() const;
  // Sends SHUTDOWN to every live node and gives on_progress its final call; the
  // job ended normally.
  Status EndJob(SteadyClock::time_point started);
  // Keeps a METRICS payload (moved out of `header`) as the sending worker's latest.
  void OnMetrics(const Node* node, proto::Header& header);
  // Calls on_progress when it is due (and `final`: at once).
  void ReportProgress(SteadyClock::time_point now, bool final);
  void Broadcast(proto::MsgType type, const std::string& message);
  void SendTo(const std::string& routing_id, proto::MsgType type, const std::string& message = {});
  Node* FindNode(const std::string& routing_id);

  zmq::context_t& context_;
  SchedulerOptions options_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::string endpoint_;
  Waker stop_waker_;
  std::atomic<bool> stop_{false};
  std::vector<Node> nodes_;  // event-loop thread only
  bool cluster_up_ = false;
  SteadyClock::time_point next_progress_ = SteadyClock::time_point::max();
  std::map<std::string, std::vector<std::string>> barriers_;  // name -> waiting routing ids
  mutable Mutex reports_mu_;
  std::vector<std::string> reports_ GUARDED_BY(reports_mu_);
  mutable Mutex metrics_mu_;
  std::vector<std::string> metrics_ GUARDED_BY(metrics_mu_);  // by worker id
  SchedulerStats stats_ GUARDED_BY(metrics_mu_);
};

}  // namespace eddy::scheduler

#endif  // EDDY_SCHEDULER_SCHEDULER_NODE_H_
