// Recovery: the scheduler's side of a global rollback after a server or a
// worker is lost, as a state machine without sockets (like VersionCoordinator):
// events in (a node lost, a node registering, a server done loading, time) and
// decisions out (which epoch and version to roll back to, whom to tell what,
// when to give up). SchedulerNode performs the I/O it asks for.
//
// The protocol (docs/protocol.md, "Recovery"):
//   1. A node is lost: a new epoch starts. Every live node is told RECOVER
//      (epoch, version): workers fail their operations in flight with a
//      retriable status and wait; live servers drop their state and load the
//      version (the last committed one).
//   2. A replacement registers (the process supervisor restarted it, or an
//      operator did): it takes the lost node's id. A server gets the cluster
//      view with the version to load; a worker gets its view in step 3.
//   3. Every slot is filled and every server reports RECOVERED(epoch): the
//      workers get the new view (the replacements' endpoints, the version's
//      stream positions, the epoch) and train again from those positions, the
//      replacement worker from the lost one's. Messages of an older epoch are
//      refused.
//   A node lost meanwhile starts the next epoch (back to 1); no replacement
//   within the timeout ends the job with an error that says what to do.
//   With adoption on (--tolerate_worker_failures), a lost worker's slot still
//   vacant after `adopt_after` is offered to the live workers (ADOPT): one of
//   them runs the slot as a second worker of its process, registering as the
//   replacement, so the lost worker's share of the stream goes on.
// A lost worker is rolled back with everyone rather than resumed alone from its
// last clock: the pushes it had in flight may have reached some servers and not
// others, and under BSP its share of a clock's sum may be half applied; the
// rollback repeats nothing and costs the rows trained since the version.
// Thread-safety: not thread-safe; owned by the scheduler's event-loop thread.
#ifndef EDDY_SCHEDULER_RECOVERY_H_
#define EDDY_SCHEDULER_RECOVERY_H_

#include <chrono>
#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/net.h"
#include "common/status.h"

namespace eddy::scheduler {

class Recovery {
 public:
  enum class Phase {
    kIdle,       // no recovery under way
    kReplacing,  // waiting for replacements of lost nodes
    kLoading,    // every slot filled; waiting for the servers to load the version
  };

  // What the event loop does after an event, in this order.
  struct Step {
    // Tell these live servers RECOVER(epoch, version): drop state, load the version.
    std::vector<int> recover_servers;
    // Tell every live worker RECOVER(epoch): fail operations in flight and wait.
    bool pause_workers = false;
    // Every server has the version: send the workers their new cluster view.
    bool restart_workers = false;
    // Ask live workers to run these vacant worker slots (ADOPT).
    std::vector<int> adopt_workers;
    // Give up: abort the job with this error.
    std::optional<Status> fail;
  };

  // `num_servers` server slots; `timeout`: longest wait for replacements and
  // for the servers to load (0: recovery is off, a lost server fails the job);
  // `adopt_after`: how long a lost worker's slot waits for a replacement
  // before the live workers are asked to adopt it (0: never).
  Recovery(int num_servers, std::chrono::milliseconds timeout,
           std::chrono::milliseconds adopt_after = std::chrono::milliseconds(0));

  // False when a lost server fails the job (timeout 0).
  bool enabled() const { return timeout_.count() > 0; }
  Phase phase() const { return phase_; }
  bool active() const { return phase_ != Phase::kIdle; }
  // The current epoch (0 before any recovery) and the version it rolls back to.
  uint32_t epoch() const { return epoch_; }
  uint64_t version() const { return version_; }
  // Recoveries started, and lost servers and workers in the current one.
  uint64_t recoveries() const { return recoveries_; }
  const std::set<int>& vacant() const { return vacant_; }
  const std::set<int>& vacant_workers() const { return vacant_workers_; }

  // Server `id` stopped answering (`why` for the log and the error). Rolls back
  // to `last_committed` (0: no version yet: the initial state). Starts a new
  // epoch, also while a recovery is under way.
  Step OnServerLost(int id, uint64_t last_committed, const std::string& why,
                    SteadyClock::time_point now);
  // Worker `id` stopped answering: as OnServerLost, every server rolls back.
  Step OnWorkerLost(int id, uint64_t last_committed, const std::string& why,
                    SteadyClock::time_point now);
  // A server registers while slots are vacant: the slot it takes (the lowest
  // vacant id), or nullopt when none is vacant. The caller sends it the view with
  // epoch() and version() to load.
  std::optional<int> OnServerRegistered();
  // A worker registers: the slot it takes (`wanted` when that one is vacant,
  // else the lowest vacant id), or nullopt. Its view comes with restart_workers
  // in `step`, which may be at once (the servers had loaded already).
  std::optional<int> OnWorkerRegistered(int wanted, Step* step);
  // A node declared lost speaks again (it was stalled, or its connection
  // dropped and came back) while its slot is still vacant: it takes its own
  // slot back. Returns false when the slot is not vacant (a replacement took
  // it, or no recovery is under way). The caller tells it RECOVER; a server then
  // loads the version like the others; `step` may restart the workers at once.
  bool OnNodeReturned(bool server, int id, Step* step);
  // Server `id` loaded the version of `epoch` (stale epochs are ignored).
  Step OnServerLoaded(int id, uint32_t epoch);
  // Time passes: gives up after the timeout.
  Step OnTick(SteadyClock::time_point now);

 private:
  // A node lost: the next epoch, every live server told to load the version.
  Step StartEpoch(uint64_t last_committed, const std::string& why, SteadyClock::time_point now);
  // When every slot is filled and every server loaded: restart the workers.
  void MaybeFinish(Step* step);

  const int num_servers_;
  const std::chrono::milliseconds timeout_;
  const std::chrono::milliseconds adopt_after_;
  Phase phase_ = Phase::kIdle;
  uint32_t epoch_ = 0;
  uint64_t version_ = 0;
  uint64_t recoveries_ = 0;
  std::set<int> vacant_;          // lost servers without a replacement yet
  std::set<int> vacant_workers_;  // lost workers without a replacement yet
  std::set<int> loaded_;  // servers that loaded version_ in epoch_
  std::string why_;       // the first loss of this recovery
  SteadyClock::time_point deadline_;
  // When vacant worker slots are offered for adoption, and those offered.
  SteadyClock::time_point adopt_at_;
  std::set<int> adopt_asked_;
};

}  // namespace eddy::scheduler

#endif  // EDDY_SCHEDULER_RECOVERY_H_
