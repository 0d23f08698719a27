// VersionCoordinator: the scheduler's side of the model-version protocol
// (docs/protocol.md, "Model versions"): when to cut (time, rows, on demand, at
// the end), numbering, full or delta, collecting SNAPSHOT_READY / SNAPSHOT_DONE
// from every server, checking that the servers' cuts agree, and commit or abort
// (server error, timeout). It decides; a VersionSink (the scheduler node, or a
// fake in tests) writes the files and sends the messages.
// Thread-safety: not thread-safe; owned by the scheduler's event-loop thread.
#ifndef EDDY_SCHEDULER_VERSION_COORDINATOR_H_
#define EDDY_SCHEDULER_VERSION_COORDINATOR_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/net.h"
#include "common/proto/eddy.pb.h"
#include "common/status.h"

namespace eddy::scheduler {

// One model version's outcome (SchedulerOptions::on_version).
struct VersionSummary {
  uint64_t version = 0;
  uint64_t parent = 0;  // 0: full
  bool ok = false;
  std::string error;          // when !ok
  std::string dir;            // committed version directory
  uint64_t rows = 0;          // sparse rows written
  uint64_t evicted = 0;       // rows evicted after the copy (tombstones of the next delta)
  uint64_t bytes = 0;         // data files
  double pause_seconds = 0;   // longest server event-loop stall for the capture
  double window_seconds = 0;  // longest first-marker-to-capture time (pushes held)
  double write_seconds = 0;   // longest server file writing
  double total_seconds = 0;   // request to commit
  std::vector<proto::WorkerCut> cuts;
};

// What the coordinator asks of its node.
class VersionSink {
 public:
  virtual ~VersionSink() = default;
  // Creates the temporary directory of `version` (parent 0: full); its path.
  virtual StatusOr<std::string> BeginVersion(uint64_t version, uint64_t parent) = 0;
  // SNAPSHOT with `request` to every server.
  virtual void RequestServers(const proto::SnapshotRequest& request) = 0;
  // SNAPSHOT(version) to every live worker.
  virtual void TellWorkers(uint64_t version) = 0;
  // Adds the servers' files (reports by server id, checked to agree on the cut)
  // to the version's manifest and moves the directory into place; on success
  // sets summary->dir.
  virtual Status CommitVersion(uint64_t version,
                               const std::map<int, proto::SnapshotReport>& reports,
                               VersionSummary* summary) = 0;
  // Removes the temporary directory of a version that failed.
  virtual void AbortVersion(uint64_t version) = 0;
  // After a commit: drops old versions, keeping the newest `keep_full` full ones.
  virtual void ApplyRetention(int keep_full) = 0;
  // After each version (begun or not), committed or failed.
  virtual void VersionFinished(const VersionSummary& summary) = 0;
};

struct VersionPolicy {
  int num_servers = 1;
  // Take a version this often (0: not by time) and every this many rows (0: not).
  std::chrono::milliseconds interval{0};
  uint64_t every_rows = 0;
  bool at_end = true;  // a last version once every worker finished
  int full_every = 10;
  int keep_full_versions = 3;
  uint32_t evict_after_versions = 0;
  std::chrono::milliseconds timeout{300'000};
  uint64_t test_fail_after_bytes = 0;
  // The time (tests fake it).
  std::function<SteadyClock::time_point()> clock = [] { return SteadyClock::now(); };
};

// "12.3 s": a duration for messages.
std::string FormatSeconds(SteadyClock::duration d);

class VersionCoordinator {
 public:
  // `first_version`: the number the next version gets (after those on disk).
  // `sink` must outlive the coordinator.
  VersionCoordinator(VersionPolicy policy, uint64_t first_version, VersionSink* sink);

  // The cluster is up: the triggers start counting; versions may start.
  void Start();
  // Asks for a version now (SNAPSHOT_NOW or RequestSnapshot()); returns the
  // number of the version that will hold it.
  uint64_t RequestNow();
  // Time passes: takes a version when `requested` (on demand), the interval
  // elapsed or `rows` (the workers' total, if known) reached the next multiple of
  // every_rows, unless `workers_done`; fails the open version past the timeout.
  void Tick(std::optional<uint64_t> rows, bool requested, bool workers_done);
  // SNAPSHOT_READY(version) from server `server`.
  void OnReady(int server, uint64_t version);
  // SNAPSHOT_DONE from server `server` (`name` for the error message).
  void OnDone(int server, const std::string& name, proto::SnapshotReport report);
  // Every live worker finished: true once the last version (if any is wanted)
  // is done; starts it the first time.
  bool ReadyToEnd();

  bool pending() const { return pending_.has_value(); }
  // The next version's number.
  uint64_t next_version() const { return next_version_; }
  // The newest version this job committed (0: none yet).
  uint64_t last_committed() const { return last_committed_; }
  // A recovery: the open version (if any) fails with `why` and no version starts
  // until Unpause(); the next one is full (the servers' captures start over).
  void Pause(const std::string& why);
  void Unpause();
  bool paused() const { return paused_; }
  // When Tick() wants to run next (the time trigger).
  SteadyClock::time_point next_deadline() const { return next_snapshot_; }

 private:
  struct Pending {
    Pending();  // out of line: clang needs it complete for std::optional
    uint64_t version = 0;
    uint64_t parent = 0;
    std::set<int> ready;  // servers that have the request
    bool workers_told = false;
    std::map<int, proto::SnapshotReport> reports;  // by server id
    SteadyClock::time_point started;
  };

  // Starts the next version (or right after the open one).
  void StartVersion();
  // Ends the open version: commits it when `error` is empty and the reports
  // agree, else aborts it.
  void Finish(std::string error);
  // Checks the reports and sums them into `summary`; the error, or empty.
  std::string Summarize(const std::map<int, proto::SnapshotReport>& reports,
                        VersionSummary* summary) const;

  const VersionPolicy policy_;
  VersionSink* const sink_;
  bool started_ = false;
  std::optional<Pending> pending_;
  bool wanted_ = false;  // another version right after the open one
  bool final_taken_ = false;
  uint64_t next_version_;
  uint64_t last_committed_ = 0;  // by this job (a delta's parent)
  uint64_t deltas_since_full_ = 0;
  bool force_full_ = false;
  bool paused_ = false;
  SteadyClock::time_point next_snapshot_ = SteadyClock::time_point::max();
  uint64_t next_rows_ = 0;
};

}  // namespace eddy::scheduler

#endif  // EDDY_SCHEDULER_VERSION_COORDINATOR_H_
