#include "scheduler/version_coordinator.h"

#include <algorithm>
#include <cstdio>

namespace eddy::scheduler {

std::string FormatSeconds(SteadyClock::duration d) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f s", std::chrono::duration<double>(d).count());
  return buf;
}

VersionCoordinator::Pending::Pending() = default;

VersionCoordinator::VersionCoordinator(VersionPolicy policy, uint64_t first_version,
                                       VersionSink* sink)
    : policy_(std::move(policy)),
      sink_(sink),
      next_version_(std::max<uint64_t>(1, first_version)) {}

void VersionCoordinator::Start() {
  started_ = true;
  if (policy_.interval.count() > 0) next_snapshot_ = policy_.clock() + policy_.interval;
  next_rows_ = policy_.every_rows;
}

uint64_t VersionCoordinator::RequestNow() {
  // The version that will hold this request: the next one to start.
  const uint64_t version = next_version_;
  StartVersion();
  return version;
}

void VersionCoordinator::Tick(std::optional<uint64_t> rows, bool requested, bool workers_done) {
  if (!started_) return;
  const SteadyClock::time_point now = policy_.clock();
  bool take = requested;
  if (now >= next_snapshot_) {
    take = true;
    next_snapshot_ = now + policy_.interval;
  }
  if (next_rows_ > 0 && rows && *rows >= next_rows_) {
    take = true;
    while (next_rows_ <= *rows) next_rows_ += policy_.every_rows;
  }
  if (take && !workers_done) StartVersion();
  if (pending_ && now - pending_->started > policy_.timeout) {
    Finish("not every server wrote its part within " + FormatSeconds(policy_.timeout));
  }
}

bool VersionCoordinator::ReadyToEnd() {
  if (!policy_.at_end) return true;
  if (pending_) return false;
  if (!final_taken_) {
    final_taken_ = true;
    StartVersion();
    return !pending_;
  }
  return true;
}

void VersionCoordinator::Pause(const std::string& why) {
  paused_ = true;
  wanted_ = false;
  if (pending_) Finish(why);
  force_full_ = true;
}

void VersionCoordinator::Unpause() { paused_ = false; }

void VersionCoordinator::StartVersion() {
  if (!started_ || paused_) return;
  if (pending_) {
    wanted_ = true;  // right after the one in progress
    return;
  }
  const uint64_t version = next_version_++;
  // A delta against the previous version of this job, unless a full one is due.
  const bool full = last_committed_ == 0 || force_full_ ||
                    deltas_since_full_ + 1 >= static_cast<uint64_t>(policy_.full_every);
  const uint64_t parent = full ? 0 : last_committed_;
  StatusOr<std::string> temp_dir = sink_->BeginVersion(version, parent);
  if (!temp_dir.ok()) {
    VersionSummary summary;
    summary.version = version;
    summary.error = temp_dir.status().ToString();
    LOG(ERROR) << "scheduler: version " << version << " failed: " << summary.error;
    sink_->VersionFinished(summary);
    return;
  }
  Pending& p = pending_.emplace();
  p.version = version;
  p.parent = parent;
  p.started = policy_.clock();
  proto::SnapshotRequest request;
  request.set_version(version);
  request.set_parent_version(parent);
  request.set_temp_dir(*temp_dir);
  request.set_encoding(proto::Manifest::ENCODING_FLOAT32);
  request.set_fail_after_bytes(policy_.test_fail_after_bytes);
  request.set_evict_after_versions(policy_.evict_after_versions);
  // Servers first; workers are told once every server has the request (see
  // OnReady), so a server never sees a marker before the request.
  sink_->RequestServers(request);
  VLOG(1) << "scheduler: taking version " << version;
}

void VersionCoordinator::OnReady(int server, uint64_t version) {
  if (!pending_ || version != pending_->version || pending_->workers_told) return;
  pending_->ready.insert(server);
  if (static_cast<int>(pending_->ready.size()) < policy_.num_servers) return;
  pending_->workers_told = true;
  sink_->TellWorkers(pending_->version);
}

void VersionCoordinator::OnDone(int server, const std::string& name, proto::SnapshotReport report) {
  if (!pending_ || report.version() != pending_->version) {
    VLOG(1) << "scheduler: late report for version " << report.version();
    return;
  }
  if (!report.error().empty()) {
    Finish(name + ": " + report.error());
    return;
  }
  pending_->reports[server] = std::move(report);
  if (static_cast<int>(pending_->reports.size()) == policy_.num_servers) Finish("");
}

std::string VersionCoordinator::Summarize(const std::map<int, proto::SnapshotReport>& reports,
                                          VersionSummary* summary) const {
  std::string error;
  const proto::SnapshotReport* first = nullptr;
  for (const auto& [id, r] : reports) {
    if (error.empty() &&
        (r.files_size() != r.file_dense_size() || r.files_size() != r.file_dims_size() ||
         r.files_size() != r.file_state_floats_size())) {
      error = "server " + std::to_string(id) + " sent an inconsistent report";
    }
    for (const proto::Manifest::FileEntry& f : r.files()) summary->bytes += f.bytes();
    if (first == nullptr) {
      first = &r;
    } else if (error.empty()) {
      // Every server saw the same markers, so they agree on every worker's cut.
      bool same = first->cuts_size() == r.cuts_size();
      for (int i = 0; same && i < r.cuts_size(); ++i) {
        same = first->cuts(i).SerializeAsString() == r.cuts(i).SerializeAsString();
      }
      if (!same) error = "servers disagree on the workers' cut (a bug): see the server logs";
    }
    summary->rows += r.rows();
    summary->evicted += r.evicted();
    summary->pause_seconds = std::max(summary->pause_seconds, r.pause_seconds());
    summary->window_seconds = std::max(summary->window_seconds, r.window_seconds());
    summary->write_seconds = std::max(summary->write_seconds, r.write_seconds());
  }
  if (first == nullptr) return error.empty() ? "no server reported" : error;
  if (error.empty()) summary->cuts.assign(first->cuts().begin(), first->cuts().end());
  return error;
}

void VersionCoordinator::Finish(std::string error) {
  Pending p = std::move(*pending_);
  pending_.reset();
  VersionSummary summary;
  summary.version = p.version;
  summary.parent = p.parent;
  if (error.empty()) error = Summarize(p.reports, &summary);
  if (error.empty()) {
    Status s = sink_->CommitVersion(p.version, p.reports, &summary);
    if (!s.ok()) error = s.ToString();
  }
  summary.total_seconds = std::chrono::duration<double>(policy_.clock() - p.started).count();
  if (!error.empty()) {
    sink_->AbortVersion(p.version);
    summary.error = error;
    LOG(ERROR) << "scheduler: version " << p.version
               << " failed (older versions stay valid): " << error;
    force_full_ = true;  // servers may hold captures the scheduler never committed
  } else {
    summary.ok = true;
    last_committed_ = p.version;
    force_full_ = false;
    deltas_since_full_ = p.parent == 0 ? 0 : deltas_since_full_ + 1;
    char line[256];
    std::snprintf(line, sizeof(line),
                  "%s, %llu rows, %.1f MB, training paused %.2f ms, cut window %.2f ms, "
                  "written in %.2f s",
                  p.parent == 0 ? "full" : "delta", static_cast<unsigned long long>(summary.rows),
                  summary.bytes / 1e6, summary.pause_seconds * 1e3, summary.window_seconds * 1e3,
                  summary.total_seconds);
    LOG(INFO) << "scheduler: version " << p.version << " committed at " << summary.dir << ": "
              << line;
    sink_->ApplyRetention(policy_.keep_full_versions);
  }
  sink_->VersionFinished(summary);
  if (wanted_) {
    wanted_ = false;
    StartVersion();
  }
}

}  // namespace eddy::scheduler
