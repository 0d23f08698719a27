// Supervisor: runs node processes (a server, a worker) as children of this
// process and restarts one that dies by a signal (kill -9, a crash), so a lost
// node comes back by itself and rejoins the job through the scheduler's
// recovery (docs/protocol.md, "Recovery"). A child that exits, with 0 or with
// an error code (its role decided the job failed), is not restarted: its code
// is the child's result.
//
// Ownership: the Supervisor owns its children. Children never outlive it: each
// child is told the supervisor's pid (BindToSupervisor, called by the child at
// startup, makes the kernel kill it with SIGKILL when the supervisor dies), and
// the destructor kills and reaps any child still running.
//
// Threads: one internal monitor thread spawns, reaps and restarts every child
// (the kernel's parent-death signal follows the thread that spawned a child, so
// that thread lives until every child is reaped). The public methods may be
// called from any thread. With `forward_signals`, SIGTERM and SIGINT sent to
// this process are forwarded to every child; once they ended this process ends
// by the same signal (only one Supervisor at a time may forward signals).
#ifndef EDDY_JOB_SUPERVISOR_H_
#define EDDY_JOB_SUPERVISOR_H_

#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/status.h"

namespace eddy::job {

struct SupervisorOptions {
  std::string program = "/proc/self/exe";  // what every child runs
  // Restarts allowed per child; one more death by a signal ends it for good.
  int max_restarts = 10;
  // Delay before a child's first restart; it doubles with each restart of the
  // same child, up to max_backoff.
  std::chrono::milliseconds backoff{100};
  std::chrono::milliseconds max_backoff{2000};
  // After Signal(SIGTERM or another signal), a child still running this much
  // later gets SIGKILL.
  std::chrono::milliseconds kill_grace{10000};
  // Forward SIGTERM / SIGINT received by this process to the children, then end
  // this process with that signal once they ended.
  bool forward_signals = false;
};

struct ChildSpec {
  std::string name;               // "server 1": for the log only
  std::vector<std::string> args;  // arguments after the program name
};

struct ChildResult {
  std::string name;
  int exit_code = 0;  // its exit code, or 128 + signal when it died by a signal for good
  int restarts = 0;   // how often it was restarted
};

class Supervisor {
 public:
  explicit Supervisor(SupervisorOptions options);
  // Kills (SIGKILL) and reaps every child still running.
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Starts a child now; returns its pid, or why it could not start.
  StatusOr<pid_t> Start(ChildSpec spec);
  // From now on a child that dies by a signal is not restarted (the job ends).
  void StopRestarting();
  // StopRestarting, then sends `signal` to every running child; SIGKILL follows
  // kill_grace later for any child still running.
  void Signal(int signal);
  // Waits until every started child has ended for good; returns their results
  // in Start order, or nullopt after `timeout`.
  std::optional<std::vector<ChildResult>> Wait(std::chrono::milliseconds timeout);
  std::vector<ChildResult> Wait();

 private:
  struct Child;
  void Monitor();
  Status Spawn(Child& child) REQUIRES(mu_);
  void Reap(Child& child) REQUIRES(mu_);
  void SignalLocked(int signal) REQUIRES(mu_);
  bool AllEndedLocked() const REQUIRES(mu_);
  void Wake();

  const SupervisorOptions options_;
  const int wake_fd_;  // eventfd: wakes the monitor thread
  mutable Mutex mu_;
  CondVar changed_;  // a child ended, or a start request was served
  // In Start order; a Child's fields are guarded by mu_ too.
  std::vector<std::unique_ptr<Child>> children_ GUARDED_BY(mu_);
  std::deque<Child*> to_start_ GUARDED_BY(mu_);
  bool restarting_ GUARDED_BY(mu_) = true;
  bool quit_ GUARDED_BY(mu_) = false;
  // When still-running children get SIGKILL after Signal().
  std::optional<std::chrono::steady_clock::time_point> kill_at_ GUARDED_BY(mu_);
  int forwarded_signal_ GUARDED_BY(mu_) = 0;
  struct sigaction old_term_ {}, old_int_ {};  // restored by the destructor (forward_signals)
  std::thread monitor_;
};

// Called by a supervised child at startup (--supervisor_pid): the kernel kills
// this process with SIGKILL when `supervisor` dies. Fails when the supervisor
// is already gone (this process was reparented before it could ask).
Status BindToSupervisor(pid_t supervisor);

}  // namespace eddy::job

#endif  // EDDY_JOB_SUPERVISOR_H_
