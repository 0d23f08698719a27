// SchedulerNode's side of recovery that touches sockets and files: performing
// what the Recovery state machine decides (RECOVER to servers and workers, the
// replacements' views, RESTART with the version's stream positions).
// Event-loop thread only.
#include <glog/logging.h>

#include "model_store/version_dir.h"
#include "model_store/version_reader.h"
#include "scheduler/scheduler_node.h"

namespace eddy::scheduler {

std::vector<proto::WorkerCut> ResumePositionsOf(const proto::Manifest& manifest) {
  std::vector<proto::WorkerCut> cuts;
  for (const auto& p : manifest.positions()) {
    proto::WorkerCut& c = cuts.emplace_back();
    c.set_worker(p.worker());
    c.set_rows_consumed(p.rows_consumed());
    if (p.partitions_size() > 0) {
      proto::Manifest::StreamPosition state;
      state.set_topic(p.topic());
      *state.mutable_partitions() = p.partitions();
      c.set_stream_state(state.SerializeAsString());
    }
  }
  std::sort(cuts.begin(), cuts.end(),
            [](const auto& a, const auto& b) { return a.worker() < b.worker(); });
  return cuts;
}

std::optional<Status> SchedulerNode::OnNodeLost(Node& node, const std::string& why,
                                                SteadyClock::time_point now) {
  node.lost = true;
  node.done = false;
  // The version to roll back to: this job's newest, or the one it resumed from.
  uint64_t version = versions_ ? versions_->last_committed() : 0;
  if (version == 0) version = options_.resume_version;
  if (version == 0 && node.role == proto::WORKER && options_.stream_partitions > 0) {
    // Before the first version the workers go back to where they started; a
    // replacement worker cannot know where the lost one started in a topic.
    std::string error = why +
                        "; aborting the job: no version was committed yet to roll back to, and "
                        "a replacement worker cannot tell where the lost one started in the "
                        "topic; take versions early (--snapshot_every) and relaunch";
    LOG(ERROR) << "scheduler: " << error;
    Broadcast(proto::ABORT, error);
    return UnavailableError(error);
  }
  if (!recovery_.active()) {
    recovery_started_ = now;
    recovery_lost_ = node.Name();
    // Rows trained past the version, by the workers' latest reports.
    recovery_rows_replayed_ = 0;
    StatusOr<model_store::VersionReader> reader =
        version == 0 ? StatusOr<model_store::VersionReader>(NotFoundError("no version"))
                     : model_store::VersionReader::Open(options_.model_dir + "/" +
                                                        model_store::VersionDirName(version));
    if (options_.rows_from_metrics && (reader.ok() || version == 0)) {
      uint64_t at_version = 0;
      if (reader.ok()) {
        for (const auto& p : reader->manifest().positions()) at_version += p.rows_consumed();
      }
      const uint64_t trained = options_.rows_from_metrics(latest_metrics());
      if (trained > at_version) recovery_rows_replayed_ = trained - at_version;
    }
  }
  LOG(WARNING) << "scheduler: " << why << "; recovering: rolling back to "
               << (version == 0 ? "the initial state (no version yet)"
                                : "version " + std::to_string(version))
               << " (waiting up to " << FormatSeconds(options_.recovery_timeout)
               << " for a replacement; restart the lost process with the same flags)";
  if (versions_) versions_->Pause(node.Name() + " was lost");
  // A worker that finished trained rows after the version too: it runs again.
  for (Node& n : nodes_) {
    if (n.role != proto::WORKER || n.lost || !n.done) continue;
    n.done = false;
    n.report.clear();
    MutexLock lock(&reports_mu_);
    if (n.id < static_cast<int>(reports_.size())) reports_[n.id].clear();
  }
  Recovery::Step step = node.role == proto::SERVER
                            ? recovery_.OnServerLost(node.id, version, why, now)
                            : recovery_.OnWorkerLost(node.id, version, why, now);
  if (std::optional<Status> end = PerformRecovery(std::move(step))) return end;
  return AdmitWaiting();
}

std::optional<Status> SchedulerNode::AdmitWaiting() {
  // A replacement that registered early takes the place now.
  for (size_t i = 0; i < waiting_nodes_.size();) {
    std::optional<Status> end;
    if (AdmitReplacement(waiting_nodes_[i].first, waiting_nodes_[i].second, &end)) {
      waiting_nodes_.erase(waiting_nodes_.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      ++i;
    }
    if (end) return end;
  }
  return std::nullopt;
}

std::optional<Status> SchedulerNode::PerformRecovery(Recovery::Step step) {
  if (step.fail) {
    LOG(ERROR) << "scheduler: " << step.fail->message();
    Broadcast(proto::ABORT, std::string(step.fail->message()));
    return *step.fail;
  }
  if (!step.recover_servers.empty() || step.pause_workers) {
    proto::RecoveryRequest request;
    request.set_epoch(recovery_.epoch());
    request.set_version(recovery_.version());
    request.set_root(options_.model_dir);
    request.set_why(recovery_lost_ + " was lost");
    const std::string body = request.SerializeAsString();
    for (const Node& n : nodes_) {
      // A replacement worker without a view yet gets it at the end.
      if (n.lost || n.awaiting_view) continue;
      const bool server = n.role == proto::SERVER;
      const bool told =
          server ? std::find(step.recover_servers.begin(), step.recover_servers.end(), n.id) !=
                       step.recover_servers.end()
                 : step.pause_workers;
      if (!told) continue;
      Message m{MakeHeader(proto::RECOVER), {}, {}};
      m.header.set_payload(body);
      SendMessage(*socket_, m, n.routing_id, /*dont_wait=*/true).IgnoreError();
    }
    if (options_.on_recovery && step.pause_workers) {
      options_.on_recovery(RecoveryEvent{false, recovery_.epoch(), recovery_.version(),
                                         recovery_lost_, 0, recovery_rows_replayed_});
    }
  }
  if (!step.adopt_workers.empty()) {
    // Each vacant slot to the next live worker, in id order.
    std::vector<const Node*> live;
    for (const Node& n : nodes_) {
      if (n.role == proto::WORKER && !n.lost && !n.awaiting_view) live.push_back(&n);
    }
    std::sort(live.begin(), live.end(), [](const Node* a, const Node* b) { return a->id < b->id; });
    for (size_t i = 0; i < step.adopt_workers.size() && !live.empty(); ++i) {
      const Node& adopter = *live[i % live.size()];
      proto::RecoveryRequest request;
      request.set_epoch(recovery_.epoch());
      request.set_version(recovery_.version());
      request.set_root(options_.model_dir);
      request.set_why("no replacement for worker " + std::to_string(step.adopt_workers[i]) +
                      " registered");
      request.set_adopt_worker(step.adopt_workers[i]);
      Message m{MakeHeader(proto::ADOPT), {}, {}};
      m.header.set_payload(request.SerializeAsString());
      SendMessage(*socket_, m, adopter.routing_id, /*dont_wait=*/true).IgnoreError();
      LOG(WARNING) << "scheduler: no replacement for worker " << step.adopt_workers[i]
                   << " yet; " << adopter.Name()
                   << " takes over its share (--tolerate_worker_failures)";
    }
  }
  if (step.restart_workers) {
    proto::ClusterView view = BaseView();
    // Version 0 (lost before the first version): no positions; every worker
    // goes back to where it started (Client::WaitForRestart).
    if (recovery_.version() > 0) {
      StatusOr<model_store::VersionReader> reader = model_store::VersionReader::Open(
          options_.model_dir + "/" + model_store::VersionDirName(recovery_.version()));
      if (!reader.ok()) {
        Status error = reader.status().WithContext("recovery: the version to roll back to");
        LOG(ERROR) << "scheduler: " << error;
        Broadcast(proto::ABORT, std::string(error.message()));
        return error;
      }
      view.set_resume_root(options_.model_dir);
      view.set_resume_version(recovery_.version());
      for (const proto::WorkerCut& c : ResumePositionsOf(reader->manifest())) {
        *view.add_resume_positions() = c;
      }
    }
    for (Node& n : nodes_) {
      if (n.role != proto::WORKER || n.lost) continue;
      // A replacement worker starts from its view as a resumed job's workers do.
      SendView(n, view, n.awaiting_view ? proto::CLUSTER_VIEW : proto::RESTART);
      n.awaiting_view = false;
    }
    const double seconds =
        std::chrono::duration<double>(SteadyClock::now() - recovery_started_).count();
    LOG(WARNING) << "scheduler: recovered from the loss of " << recovery_lost_ << " in "
                 << seconds << " s: every server is at version " << recovery_.version()
                 << " (epoch " << recovery_.epoch() << "); the workers go on from its positions";
    if (versions_) versions_->Unpause();
    if (options_.on_recovery) {
      options_.on_recovery(RecoveryEvent{true, recovery_.epoch(), recovery_.version(),
                                         recovery_lost_, seconds, recovery_rows_replayed_});
    }
  }
  return std::nullopt;
}

bool SchedulerNode::AdmitReplacement(const std::string& routing_id, const proto::NodeInfo& info,
                                     std::optional<Status>* end) {
  const bool server = info.role() == proto::SERVER;
  Recovery::Step step;
  std::optional<int> slot = server ? recovery_.OnServerRegistered()
                                   : recovery_.OnWorkerRegistered(info.requested_rank(), &step);
  if (!slot) return false;
  for (Node& n : nodes_) {
    if (n.role != info.role() || n.id != *slot) continue;
    n.info = info;
    n.routing_id = routing_id;
    n.lost = false;
    n.done = false;
    n.report.clear();
    n.server_report.Clear();
    n.last_seen = SteadyClock::now();
    // The lost node's connection is not the replacement's.
    n.fd = -1;
    n.closed_at.reset();
    LOG(WARNING) << "scheduler: " << n.Name() << " registered as the replacement of "
                 << (server ? "server " : "worker ") << *slot << "; "
                 << (server ? "it loads" : "it goes on from") << " version "
                 << recovery_.version();
    if (server) {
      proto::ClusterView view = BaseView();
      view.set_resume_root(options_.model_dir);
      view.set_resume_version(recovery_.version());
      SendView(n, view, proto::CLUSTER_VIEW);
    } else {
      n.awaiting_view = true;
    }
    break;
  }
  *end = PerformRecovery(std::move(step));
  return true;
}

std::optional<Status> SchedulerNode::OnLostNodeReturned(Node& node) {
  const bool server = node.role == proto::SERVER;
  Recovery::Step step;
  if (!recovery_.OnNodeReturned(server, node.id, &step)) return std::nullopt;
  node.lost = false;
  node.done = false;
  node.closed_at.reset();
  node.last_seen = SteadyClock::now();
  LOG(WARNING) << "scheduler: " << node.Name()
               << " answers again; it takes its place back and "
               << (server ? "loads" : "goes on from") << " version " << recovery_.version();
  // Like the other live nodes: a server loads the version and answers
  // RECOVERED, a worker stops and waits for RESTART.
  proto::RecoveryRequest request;
  request.set_epoch(recovery_.epoch());
  request.set_version(recovery_.version());
  request.set_root(options_.model_dir);
  request.set_why(recovery_lost_ + " was lost");
  Message m{MakeHeader(proto::RECOVER), {}, {}};
  m.header.set_payload(request.SerializeAsString());
  SendMessage(*socket_, m, node.routing_id, /*dont_wait=*/true).IgnoreError();
  return PerformRecovery(std::move(step));
}

std::optional<Status> SchedulerNode::OnRecovered(const Node* node, const proto::Header& header) {
  if (node == nullptr || node->role != proto::SERVER) return std::nullopt;
  return PerformRecovery(
      recovery_.OnServerLoaded(node->id, static_cast<uint32_t>(header.version())));
}

}  // namespace eddy::scheduler
