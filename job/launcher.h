// Launching a job: decides this process's role (from the MPI rank, from --role,
// or every role as threads in local mode), bootstraps the scheduler address and
// runs the role until the job ends.
// Thread-safety: RunJob is called once, from main().
#ifndef EDDY_JOB_LAUNCHER_H_
#define EDDY_JOB_LAUNCHER_H_

#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "common/metrics.h"
#include "common/status.h"
#include "scheduler/scheduler_node.h"
#include "server/server_node.h"
#include "worker/client.h"

namespace eddy::job {

enum class LaunchMode {
  kAuto,       // MPI if launched by mpirun, else local
  kMpi,        // rank 0 scheduler, ranks 1..S servers, the rest workers
  kLocal,      // every role as threads of this process
  kScheduler,  // one role per process, joined through --scheduler
  kServer,
  kWorker,
};

// --supervise (local mode and mpirun): every server and worker runs as a child
// process of a Supervisor (job/supervisor.h) that restarts it when it dies by a
// signal; a restarted server rejoins through the scheduler's recovery.
struct SuperviseOptions {
  bool enabled = false;
  int max_restarts = 10;  // per node process
  // The flags every supervised node is started with, besides its --role,
  // --scheduler, --supervisor_pid and --requested_rank.
  std::vector<std::string> node_flags;
};

struct JobOptions {
  LaunchMode mode = LaunchMode::kAuto;
  SuperviseOptions supervise;
  // Set in a node started by a supervisor: that process's pid. The node dies
  // with it (BindToSupervisor).
  int supervisor_pid = 0;
  std::string scheduler;                          // endpoint, for kServer / kWorker
  scheduler::SchedulerOptions scheduler_options;  // counts, tables, timeouts, bind address and port
  server::ServerOptions server_options;
  worker::ClientOptions client_options;
  // Prometheus /metrics (docs/http.md) of the scheduler and servers of this
  // process on this port of their bind address: -1 off, 0 a free port (logged).
  int metrics_port = -1;
  // What /metrics shows (the program's job metrics; the launcher adds the
  // servers'). Not owned; must outlive RunJob. nullptr: no metrics.
  MetricsRegistry* metrics = nullptr;
};

// What the binary does on its workers, and how the scheduler sums it up.
struct WorkerProgram {
  // A worker's whole job; returns the report passed to `summarize`.
  std::function<StatusOr<std::string>(worker::Client& client)> run;
  // Runs on the scheduler once every worker has finished, with the reports by
  // worker id; an error makes the scheduler exit non-zero. May be empty.
  std::function<Status(const std::vector<std::string>& reports)> summarize;
  // Runs on the scheduler about every progress_interval while the job runs, and
  // once more with final = true after every worker finished (before
  // `summarize`), with each worker's latest Client::ReportMetrics payload by
  // worker id (empty when none yet) and each server's latest report. Must be
  // short. May be empty.
  std::function<void(const scheduler::ProgressInputs& inputs, bool final)> progress;
  std::chrono::milliseconds progress_interval{1000};
  // Runs only in the process that runs the scheduler, before it starts: fills in
  // what only the job's input can tell (a Kafka topic's partitions), or fails
  // the job with a clear error. May be empty.
  std::function<Status(scheduler::SchedulerOptions* options)> prepare_scheduler;
};

// Parses a --role value ("", "local", "scheduler", "server", "worker").
StatusOr<LaunchMode> ParseLaunchMode(const std::string& role, bool local);

// True when this process was started by mpirun (Open MPI, or a PMI/PMIx launcher).
bool LaunchedByMpi();

// Runs this process's part of the job. Returns the process exit code: 0 when
// the job finished normally, 1 otherwise (the reason is logged).
int RunJob(JobOptions options, const WorkerProgram& program);

}  // namespace eddy::job

#endif  // EDDY_JOB_LAUNCHER_H_
