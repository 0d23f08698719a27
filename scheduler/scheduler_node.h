// SchedulerNode: the job's coordinator. Servers and workers register with it; once
// every expected node has joined it sends each the cluster view (ids, server
// endpoints, table definitions). It watches heartbeats — a node silent for longer
// than node_timeout is named in an error and the job is aborted — runs barriers,
// collects the workers' final reports and ends the job with SHUTDOWN.
// Thread-safety: Bind() then Run() on one thread; Stop() from any thread.
#ifndef EDDY_SCHEDULER_SCHEDULER_NODE_H_
#define EDDY_SCHEDULER_SCHEDULER_NODE_H_

#include <atomic>
#include <chrono>
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
  // Sends SHUTDOWN to every live node; the job ended normally.
  Status EndJob(SteadyClock::time_point started);
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
  std::map<std::string, std::vector<std::string>> barriers_;  // name -> waiting routing ids
  mutable Mutex reports_mu_;
  std::vector<std::string> reports_ GUARDED_BY(reports_mu_);
};

}  // namespace eddy::scheduler

#endif  // EDDY_SCHEDULER_SCHEDULER_NODE_H_
