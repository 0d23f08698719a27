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
#include <optional>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/message.h"
#include "common/mutex.h"
#include "common/net.h"
#include "common/peer_monitor.h"
#include "common/proto/eddy.pb.h"
#include "common/status.h"
#include "model_store/version_writer.h"
#include "scheduler/recovery.h"
#include "scheduler/version_coordinator.h"

namespace eddy::model_store {
class VersionService;
}  // namespace eddy::model_store

namespace eddy::scheduler {

// What the scheduler knows of a running job's progress.
struct ProgressInputs {
  // The latest METRICS payload of each worker, by worker id (empty: none yet).
  std::vector<std::string> worker_metrics;
  // The latest heartbeat report of each server, by server id (empty: none yet).
  std::vector<proto::ServerReport> servers;
};

// A recovery as the scheduler reports it.
struct RecoveryEvent {
  bool done = false;       // false: it starts; true: the workers train again
  uint32_t epoch = 0;
  uint64_t version = 0;    // rolled back to
  std::string lost;        // what died (the first loss of this recovery)
  double seconds = 0;      // done: since the loss was noticed
  // Rows the workers had trained past the version when the loss was noticed
  // (trained again after the rollback); from rows_from_metrics, 0 without it.
  uint64_t rows_replayed = 0;
};

struct SchedulerOptions {
  std::string bind_host = "127.0.0.1";
  int port = 0;  // 0: ephemeral
  int num_servers = 1;
  int num_workers = 1;
  std::vector<proto::TableConfig> tables;
  std::chrono::milliseconds heartbeat_interval{500};
  std::chrono::milliseconds node_timeout{30'000};
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
  // METRICS payload of every worker and the latest report of every server,
  // about every progress_interval while the cluster is up, and once more with
  // final = true when every worker has finished, just before Run() returns OK
  // (not when the job fails). Must be short: heartbeats wait for it. May be empty.
  std::function<void(const ProgressInputs& inputs, bool final)> on_progress;
  std::chrono::milliseconds progress_interval{1000};
  // METRICS payloads larger than this are dropped (counted and logged).
  uint64_t max_metrics_bytes = uint64_t{16} << 20;

  // Model versions (docs/model_format.md), written under model_dir (empty: none).
  // The servers write their own data files there, so it must be the same path
  // for the scheduler and every server (one host, or a shared filesystem).
  std::string model_dir;
  // Take a version this often (0: not by time) and every this many rows
  // (0: not by rows; rows come from rows_from_metrics, at progress ticks).
  std::chrono::milliseconds snapshot_interval{0};
  uint64_t snapshot_every_rows = 0;
  std::function<uint64_t(const std::vector<std::string>& latest_metrics)> rows_from_metrics;
  // A last version once every worker finished.
  bool snapshot_at_end = true;
  // Retention: the newest full versions to keep (and their deltas).
  int keep_full_versions = 3;
  // Every full_every-th version is full, the others deltas against the previous
  // version (1: all full).
  int full_every = 10;
  // Evict sparse rows not changed in this many versions (0: never); deltas
  // carry their tombstones.
  uint32_t evict_after_versions = 0;
  // A version not written by every server within this time fails.
  std::chrono::milliseconds snapshot_timeout{300'000};
  // Added to each version's manifest: attributes, and metrics computed from the
  // workers' latest metrics at the commit (may be empty).
  std::map<std::string, std::string> version_attributes;
  std::function<std::map<std::string, double>(const std::vector<std::string>& latest_metrics)>
      version_metrics;
  // Called on the event-loop thread after each version commits or fails. Short.
  std::function<void(const VersionSummary&)> on_version;
  // A partitioned stream (Kafka) with this many partitions (0: none). The
  // scheduler deals them to the workers, partition p to worker p mod
  // num_workers, in each worker's ClusterView: no consumer-group rebalancing,
  // so a version's cut stays exact.
  int32_t stream_partitions = 0;
  // Resume: servers load version resume_version of resume_root; workers start at
  // their positions (one per worker; with a partitioned stream any number, each
  // carrying partition offsets in stream_state, which every worker reads).
  std::string resume_root;
  uint64_t resume_version = 0;
  std::vector<proto::WorkerCut> resume_positions;
  // Serve committed versions to replicas (eddy_serve --scheduler=...) on this
  // port of bind_host: -1 off, 0 an ephemeral port.
  int serve_port = -1;
  // Test hook: servers' file writes fail after this many bytes per file (0: off).
  uint64_t test_fail_after_bytes = 0;
  // Self-healing (scheduler/recovery.h): with model_dir, a lost server makes
  // the job roll back to the last committed version instead of failing: it
  // waits this long for a replacement server to register and for every server
  // to load the version (0: off, a lost server fails the job).
  std::chrono::milliseconds recovery_timeout{0};
  // Called on the event-loop thread when a recovery starts and when it ends
  // (`done`), with what died, the version and the epoch. Short. May be empty.
  std::function<void(const RecoveryEvent& event)> on_recovery;
};

// What the scheduler dropped or accepted of the workers' live metrics.
struct SchedulerStats {
  uint64_t metrics_received = 0;   // METRICS payloads kept as a worker's latest
  uint64_t metrics_ignored = 0;    // from an unregistered sender, a server or a lost worker
  uint64_t metrics_oversized = 0;  // larger than max_metrics_bytes
  uint64_t versions_committed = 0;
  uint64_t versions_failed = 0;
};

// The workers' positions recorded in a version's manifest, as resume positions
// (by worker id; Kafka partitions in stream_state).
std::vector<proto::WorkerCut> ResumePositionsOf(const proto::Manifest& manifest);

// Checks the options (counts, timeouts, tables) and says what to change.
Status ValidateSchedulerOptions(const SchedulerOptions& options);

class SchedulerNode : private VersionSink {
 public:
  // `context` must outlive the node.
  SchedulerNode(zmq::context_t& context, SchedulerOptions options);
  ~SchedulerNode() override;
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

  // Asks for a model version as soon as possible (any thread). No-op without
  // model_dir. Also reachable over the control socket: SNAPSHOT_NOW.
  void RequestSnapshot();
  // Where replicas fetch versions (empty until Run() started the service).
  std::string version_service_endpoint() const;

 private:
  struct Node {
    proto::Role role = proto::ROLE_UNKNOWN;
    int id = -1;
    proto::NodeInfo info;
    std::string routing_id;
    SteadyClock::time_point last_seen;
    bool done = false;
    bool lost = false;  // stopped answering (tolerated, or replaced in a recovery)
    // A replacement worker: registered, its view comes when the recovery ends.
    bool awaiting_view = false;
    // Its connection (the descriptor its messages came on) and when that closed
    // without a message since: lost unless it reconnects within the grace.
    int fd = -1;
    std::optional<SteadyClock::time_point> closed_at;
    std::string report;
    proto::ServerReport server_report;  // servers: from the latest heartbeat
    std::string Name() const;
  };

  // The latest heartbeat report of each server, by server id (event-loop thread).
  std::vector<proto::ServerReport> server_reports() const;
  // A value when Run() must return it (a replacement ended a failing recovery).
  std::optional<Status> OnRegister(const std::string& routing_id, const proto::Header& header);
  void SendViews();
  // Starts the version service (serve_port), if asked for.
  Status StartVersionService();
  // Receives and handles one control message; a value when Run() must return it.
  std::optional<Status> ReceiveOne(SteadyClock::time_point started);
  std::optional<Status> OnMessage(const std::string& routing_id, Message& msg,
                                  SteadyClock::time_point started);
  void OnBarrier(const Node* node, const std::string& routing_id, const proto::Header& header);
  // WORKER_DONE: true when the job is over.
  bool OnWorkerDone(Node* node, const proto::Header& header);
  void OnSnapshotNow(const std::string& routing_id, const proto::Header& header);
  void OnSnapshotReady(const Node* node, const proto::Header& header);
  void OnSnapshotDone(const Node* node, const proto::Header& header);
  // Takes due versions and fails late ones; a value when Run() must return it.
  std::optional<Status> CheckVersions(SteadyClock::time_point started);
  // Registration deadline and heartbeats; a value when Run() must return it.
  std::optional<Status> CheckNodes(SteadyClock::time_point now, SteadyClock::time_point started,
                                   SteadyClock::time_point registration_deadline);
  // A worker stopped answering and failures are tolerated: tells the others.
  void OnWorkerLost(Node& node, const std::string& why);
  // Recovery (scheduler_recovery.cc). A server or worker stopped answering:
  // rolls back or fails (a value when Run() must return it).
  std::optional<Status> OnNodeLost(Node& node, const std::string& why,
                                   SteadyClock::time_point now);
  // Performs what recovery_ decided.
  std::optional<Status> PerformRecovery(Recovery::Step step);
  // A node registering while a recovery waits for a replacement: true if it
  // took a lost node's place (a value when Run() must return it).
  bool AdmitReplacement(const std::string& routing_id, const proto::NodeInfo& info,
                        std::optional<Status>* end);
  // A node declared lost spoke again during the recovery: it takes its slot back
  // if still vacant (a value when Run() must return it).
  std::optional<Status> OnLostNodeReturned(Node& node);
  // Registered replacements waiting for a loss, admitted while slots are vacant.
  std::optional<Status> AdmitWaiting();
  // RECOVERED from a server.
  std::optional<Status> OnRecovered(const Node* node, const proto::Header& header);
  // The cluster view common to every node (ids, endpoints, tables, settings).
  proto::ClusterView BaseView() const;
  // Sends `view` to `node` as `type`, with its id and its stream partitions.
  void SendView(Node& node, proto::ClusterView view, proto::MsgType type);
  int LiveWorkers() const;
  // After a worker finished or was lost: releases complete barriers.
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
  // The job is over once every live worker finished and the last version is done.
  bool ReadyToEnd();
  void SendTo(const std::string& routing_id, proto::MsgType type, const std::string& message = {});
  Node* FindNode(const std::string& routing_id);

  // VersionSink: what versions_ asks for (event-loop thread).
  StatusOr<std::string> BeginVersion(uint64_t version, uint64_t parent) override;
  void RequestServers(const proto::SnapshotRequest& request) override;
  void TellWorkers(uint64_t version) override;
  Status CommitVersion(uint64_t version, const std::map<int, proto::SnapshotReport>& reports,
                       VersionSummary* summary) override;
  void AbortVersion(uint64_t version) override;
  void ApplyRetention(int keep_full) override;
  void VersionFinished(const VersionSummary& summary) override;
  // The manifest's metrics: version_metrics over the workers' latest reports,
  // and the version's own timings.
  std::map<std::string, double> VersionMetrics(const VersionSummary& summary) const;

  zmq::context_t& context_;
  SchedulerOptions options_;
  std::unique_ptr<model_store::VersionService> version_service_;
  std::jthread version_service_thread_;
  mutable Mutex service_mu_;
  std::string service_endpoint_ GUARDED_BY(service_mu_);
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<PeerMonitor> monitor_;  // closed connections of socket_
  std::string endpoint_;
  Waker stop_waker_;
  std::atomic<bool> stop_{false};
  std::vector<Node> nodes_;  // event-loop thread only
  bool cluster_up_ = false;
  SteadyClock::time_point next_progress_ = SteadyClock::time_point::max();
  std::map<std::string, std::vector<std::string>> barriers_;  // name -> waiting routing ids
  // Model versions (model_dir set), event-loop thread; created by Bind().
  std::unique_ptr<VersionCoordinator> versions_;
  Recovery recovery_;
  // Nodes that registered while every slot was taken: replacements for the
  // next lost node of their role (routing id, info), oldest first.
  std::vector<std::pair<std::string, proto::NodeInfo>> waiting_nodes_;
  SteadyClock::time_point recovery_started_;
  std::string recovery_lost_;
  uint64_t recovery_rows_replayed_ = 0;
  std::optional<model_store::VersionWriter> writer_;  // of the open version
  std::atomic<bool> snapshot_requested_{false};
  mutable Mutex reports_mu_;
  std::vector<std::string> reports_ GUARDED_BY(reports_mu_);
  mutable Mutex metrics_mu_;
  std::vector<std::string> metrics_ GUARDED_BY(metrics_mu_);  // by worker id
  SchedulerStats stats_ GUARDED_BY(metrics_mu_);
};

}  // namespace eddy::scheduler

#endif  // EDDY_SCHEDULER_SCHEDULER_NODE_H_
