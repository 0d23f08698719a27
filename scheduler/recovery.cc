#include "scheduler/recovery.h"

namespace eddy::scheduler {

Recovery::Recovery(int num_servers, std::chrono::milliseconds timeout,
                   std::chrono::milliseconds adopt_after)
    : num_servers_(num_servers), timeout_(timeout), adopt_after_(adopt_after) {}

Recovery::Step Recovery::OnServerLost(int id, uint64_t last_committed, const std::string& why,
                                      SteadyClock::time_point now) {
  if (timeout_.count() > 0 && (id < 0 || id >= num_servers_)) return Step{};
  if (timeout_.count() > 0) vacant_.insert(id);
  return StartEpoch(last_committed, why, now);
}

Recovery::Step Recovery::OnWorkerLost(int id, uint64_t last_committed, const std::string& why,
                                      SteadyClock::time_point now) {
  if (timeout_.count() > 0 && id < 0) return Step{};
  if (timeout_.count() > 0) {
    vacant_workers_.insert(id);
    adopt_asked_.erase(id);
    adopt_at_ = now + adopt_after_;
  }
  return StartEpoch(last_committed, why, now);
}

Recovery::Step Recovery::StartEpoch(uint64_t last_committed, const std::string& why,
                                    SteadyClock::time_point now) {
  Step step;
  if (timeout_.count() <= 0) {
    step.fail = UnavailableError(why + "; aborting the job (recovery is off: it needs "
                                       "--model_dir and --recovery_timeout_ms > 0)");
    return step;
  }
  if (phase_ == Phase::kIdle) {
    ++recoveries_;
    why_ = why;
    deadline_ = now + timeout_;
  }
  ++epoch_;
  version_ = last_committed;
  loaded_.clear();
  phase_ = Phase::kReplacing;
  for (int s = 0; s < num_servers_; ++s) {
    if (!vacant_.count(s)) step.recover_servers.push_back(s);
  }
  step.pause_workers = true;
  return step;
}

std::optional<int> Recovery::OnServerRegistered() {
  if (phase_ != Phase::kReplacing || vacant_.empty()) return std::nullopt;
  const int id = *vacant_.begin();
  vacant_.erase(vacant_.begin());
  if (vacant_.empty() && vacant_workers_.empty()) phase_ = Phase::kLoading;
  return id;
}

std::optional<int> Recovery::OnWorkerRegistered(int wanted, Step* step) {
  if (phase_ != Phase::kReplacing || vacant_workers_.empty()) return std::nullopt;
  auto it = vacant_workers_.find(wanted);
  if (it == vacant_workers_.end()) it = vacant_workers_.begin();
  const int id = *it;
  vacant_workers_.erase(it);
  if (vacant_.empty() && vacant_workers_.empty()) {
    phase_ = Phase::kLoading;
    MaybeFinish(step);
  }
  return id;
}

bool Recovery::OnNodeReturned(bool server, int id, Step* step) {
  if (phase_ != Phase::kReplacing) return false;
  std::set<int>& vacant = server ? vacant_ : vacant_workers_;
  if (vacant.erase(id) == 0) return false;
  if (vacant_.empty() && vacant_workers_.empty()) {
    phase_ = Phase::kLoading;
    MaybeFinish(step);
  }
  return true;
}

Recovery::Step Recovery::OnServerLoaded(int id, uint32_t epoch) {
  Step step;
  if (phase_ == Phase::kIdle || epoch != epoch_ || id < 0 || id >= num_servers_ ||
      vacant_.count(id)) {
    return step;
  }
  loaded_.insert(id);
  MaybeFinish(&step);
  return step;
}

void Recovery::MaybeFinish(Step* step) {
  if (phase_ != Phase::kLoading || static_cast<int>(loaded_.size()) < num_servers_) return;
  phase_ = Phase::kIdle;
  vacant_.clear();
  vacant_workers_.clear();
  adopt_asked_.clear();
  loaded_.clear();
  step->restart_workers = true;
}

Recovery::Step Recovery::OnTick(SteadyClock::time_point now) {
  Step step;
  if (phase_ == Phase::kIdle) return step;
  if (adopt_after_.count() > 0 && now >= adopt_at_ && now < deadline_) {
    for (int w : vacant_workers_) {
      if (adopt_asked_.insert(w).second) step.adopt_workers.push_back(w);
    }
  }
  if (now < deadline_) return step;
  std::string missing;
  for (int s : vacant_) missing += (missing.empty() ? "server " : ", server ") + std::to_string(s);
  for (int w : vacant_workers_) {
    missing += (missing.empty() ? "worker " : ", worker ") + std::to_string(w);
  }
  if (!missing.empty()) {
    step.fail = UnavailableError(
        why_ + "; no replacement for " + missing + " registered within " +
        std::to_string(timeout_.count()) +
        " ms (--recovery_timeout_ms): restart the lost process with the same flags (or run the "
        "job with --supervise), or relaunch the job with --resume_from=latest");
  } else {
    step.fail = UnavailableError(why_ + "; the servers did not load version " +
                                 std::to_string(version_) + " within " +
                                 std::to_string(timeout_.count()) + " ms (--recovery_timeout_ms)");
  }
  phase_ = Phase::kIdle;
  return step;
}

}  // namespace eddy::scheduler
