#include "job/launcher.h"

#include <mpi.h>
#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <list>
#include <thread>

#include "common/http_server.h"
#include "common/mutex.h"
#include "job/supervisor.h"

namespace eddy::job {
namespace {

// Runs a worker's program against a connected client, then finishes. After a
// recovery (a node was lost and every server rolled back to the last version;
// scheduler/recovery.h) the program runs again from the positions in the
// client's new view, also when it had finished: the rows it trained after the
// version were rolled back too.
Status RunOneWorker(zmq::context_t& context, const worker::ClientOptions& options,
                    const WorkerProgram& program) {
  ASSIGN_OR_RETURN(std::unique_ptr<worker::Client> client,
                   worker::Client::Connect(context, options));
  const std::string name = "worker " + std::to_string(client->worker_id());
  while (true) {
    StatusOr<std::string> report = program.run(*client);
    Status done = report.ok() ? client->Finish(*report) : report.status();
    if (done.ok()) return done;
    if (client->recovering()) {
      LOG(WARNING) << name << ": stopped for a recovery; waiting for the servers to roll back";
      ASSIGN_OR_RETURN(proto::ClusterView view,
                       client->WaitForRestart(options.registration_timeout));
      LOG(WARNING) << name << ": going on from version " << view.resume_version() << " (epoch "
                   << view.epoch() << ")";
      continue;
    }
    if (report.ok()) return done;
    Status s = report.status().WithContext(name);
    // Tell the scheduler so the whole job ends instead of waiting for this worker.
    if (client->health().ok()) client->Abort(s);
    return s;
  }
}

// The worker slots a process runs besides its own: lost workers' shares the
// scheduler asked it to take over (ADOPT, under --tolerate_worker_failures).
// Each runs on a thread of its own as one more worker of the job, registering
// as the lost worker's replacement.
// Thread-safety: Adopt() from any thread (a client's I/O thread); Join() once,
// by the owner, after its own worker returned.
class AdoptedWorkers {
 public:
  AdoptedWorkers(zmq::context_t& context, worker::ClientOptions options,
                 const WorkerProgram& program)
      : context_(context), options_(std::move(options)), program_(program) {}
  ~AdoptedWorkers() { Join().IgnoreError(); }

  // The client options of a worker of this process: adoption requests come here.
  worker::ClientOptions OptionsFor(int slot) {
    worker::ClientOptions o = options_;
    o.requested_rank = slot;
    o.on_adopt = [this](int lost) { Adopt(lost); };
    return o;
  }

  void Adopt(int slot) {
    MutexLock lock(&mu_);
    if (joined_) return;
    Status* result = &results_.emplace_back();
    threads_.emplace_back([this, slot, result] {
      *result = RunOneWorker(context_, OptionsFor(slot), program_)
                    .WithContext("adopted worker " + std::to_string(slot));
    });
  }

  // Waits for every adopted slot; the first error.
  Status Join() {
    std::list<std::jthread> threads;
    {
      MutexLock lock(&mu_);
      joined_ = true;
      threads.swap(threads_);
    }
    threads.clear();  // joins
    MutexLock lock(&mu_);
    for (const Status& s : results_) RETURN_IF_ERROR(s);
    return OkStatus();
  }

 private:
  zmq::context_t& context_;
  const worker::ClientOptions options_;
  const WorkerProgram& program_;
  Mutex mu_;
  bool joined_ GUARDED_BY(mu_) = false;
  std::list<std::jthread> threads_ GUARDED_BY(mu_);
  std::list<Status> results_ GUARDED_BY(mu_);  // one per thread, written by it
};

// This process's worker, and the lost workers' slots it is asked to adopt.
Status RunWorker(zmq::context_t& context, const worker::ClientOptions& options,
                 const WorkerProgram& program) {
  AdoptedWorkers adopted(context, options, program);
  Status own = RunOneWorker(context, adopted.OptionsFor(options.requested_rank), program);
  Status others = adopted.Join();
  return own.ok() ? others : own;
}

Status RunScheduler(scheduler::SchedulerNode& node, const WorkerProgram& program) {
  RETURN_IF_ERROR(node.Run());
  if (program.summarize) return program.summarize(node.worker_reports());
  return OkStatus();
}

int ExitCode(const Status& s, const std::string& role) {
  if (s.ok()) return 0;
  LOG(ERROR) << role << " failed: " << s;
  return 1;
}

// This process's GET /metrics on `host` (nullptr when not asked for). The
// returned server must be destroyed (stopped) before the nodes that record
// into the registry.
StatusOr<std::unique_ptr<HttpServer>> StartMetrics(const JobOptions& options,
                                                   const std::string& host,
                                                   const std::string& role) {
  if (options.metrics_port < 0 || options.metrics == nullptr) return std::unique_ptr<HttpServer>();
  auto http = std::make_unique<HttpServer>(HttpServerOptions{.bind_host = host,
                                                             .port = options.metrics_port,
                                                             .threads = 2});
  ServeMetrics(http.get(), options.metrics);
  StatusOr<int> port = http->Start();
  if (!port.ok()) return port.status().WithContext("--metrics_port");
  LOG(INFO) << role << ": metrics on http://" << host << ":" << *port << "/metrics";
  return http;
}

int RunLocal(JobOptions& options, const WorkerProgram& program) {
  zmq::context_t context;
  scheduler::SchedulerNode scheduler(context, options.scheduler_options);
  StatusOr<std::string> endpoint = scheduler.Bind();
  if (!endpoint.ok()) return ExitCode(endpoint.status(), "scheduler");
  LOG(INFO) << "local job: scheduler at " << *endpoint << ", "
            << options.scheduler_options.num_servers << " server(s), "
            << options.scheduler_options.num_workers << " worker(s) as threads";
  options.server_options.scheduler = *endpoint;
  options.client_options.scheduler = *endpoint;
  std::vector<std::unique_ptr<server::ServerNode>> servers;
  std::vector<Status> server_status(options.scheduler_options.num_servers);
  std::vector<Status> worker_status(options.scheduler_options.num_workers);
  std::vector<std::jthread> threads;
  for (int i = 0; i < options.scheduler_options.num_servers; ++i) {
    servers.push_back(std::make_unique<server::ServerNode>(context, options.server_options));
  }
  auto metrics = StartMetrics(options, options.scheduler_options.bind_host, "local job");
  if (!metrics.ok()) return ExitCode(metrics.status(), "local job");
  for (int i = 0; i < options.scheduler_options.num_servers; ++i) {
    threads.emplace_back([&, i] { server_status[i] = servers[i]->Run(); });
  }
  for (int i = 0; i < options.scheduler_options.num_workers; ++i) {
    threads.emplace_back(
        [&, i] { worker_status[i] = RunWorker(context, options.client_options, program); });
  }
  Status s = RunScheduler(scheduler, program);
  if (!s.ok()) {
    for (auto& server : servers) server->Stop();
  }
  threads.clear();  // joins
  metrics->reset();
  int code = ExitCode(s, "scheduler");
  for (size_t i = 0; i < server_status.size(); ++i) {
    if (s.ok()) code |= ExitCode(server_status[i], "server thread " + std::to_string(i));
  }
  for (size_t i = 0; i < worker_status.size(); ++i) {
    if (s.ok()) code |= ExitCode(worker_status[i], "worker thread " + std::to_string(i));
  }
  return code;
}

// --supervise: how nodes are started, and the arguments of one.
SupervisorOptions SupervisorOptionsFor(const JobOptions& options) {
  SupervisorOptions o;
  o.max_restarts = options.supervise.max_restarts;
  o.forward_signals = true;
  return o;
}

ChildSpec NodeSpec(const JobOptions& options, const std::string& role, int index,
                   const std::string& endpoint) {
  ChildSpec spec;
  spec.name = role + " " + std::to_string(index);
  spec.args = options.supervise.node_flags;  // first: the node's own flags below win
  spec.args.insert(spec.args.end(), {"--role=" + role, "--scheduler=" + endpoint,
                                     "--supervisor_pid=" + std::to_string(getpid()),
                                     // the id it had: the log's names match the scheduler's
                                     "--requested_rank=" + std::to_string(index)});
  return spec;
}

// How long the supervised nodes get to exit once the scheduler ended the job.
constexpr std::chrono::seconds kNodesExitTimeout{60};

// Local mode with --supervise: the scheduler runs here, every server and
// worker in a supervised child process.
int RunLocalSupervised(JobOptions& options, const WorkerProgram& program) {
  zmq::context_t context;
  scheduler::SchedulerNode scheduler(context, options.scheduler_options);
  StatusOr<std::string> endpoint = scheduler.Bind();
  if (!endpoint.ok()) return ExitCode(endpoint.status(), "scheduler");
  const int num_servers = options.scheduler_options.num_servers;
  const int num_workers = options.scheduler_options.num_workers;
  LOG(INFO) << "local job: scheduler at " << *endpoint << ", " << num_servers << " server(s), "
            << num_workers << " worker(s) as supervised processes (up to "
            << options.supervise.max_restarts << " restart(s) each)";
  Supervisor supervisor(SupervisorOptionsFor(options));
  for (int i = 0; i < num_servers + num_workers; ++i) {
    const bool server = i < num_servers;
    StatusOr<pid_t> pid = supervisor.Start(NodeSpec(options, server ? "server" : "worker",
                                                    server ? i : i - num_servers, *endpoint));
    if (!pid.ok()) return ExitCode(pid.status(), "supervisor");  // ~Supervisor kills the others
  }
  Status s = RunScheduler(scheduler, program);
  supervisor.StopRestarting();
  if (!s.ok()) supervisor.Signal(SIGTERM);
  std::optional<std::vector<ChildResult>> results = supervisor.Wait(kNodesExitTimeout);
  if (!results) {
    LOG(WARNING) << "supervisor: some nodes still run " << kNodesExitTimeout.count()
                 << " s after the job ended; killing them";
    supervisor.Signal(SIGKILL);
    results = supervisor.Wait();
  }
  for (const ChildResult& r : *results) {
    if (r.exit_code != 0 && s.ok()) {
      LOG(WARNING) << r.name << " ended with code " << r.exit_code << " (the scheduler finished)";
    }
  }
  return ExitCode(s, "scheduler");
}

// Under mpirun with --supervise: this rank runs its node as a supervised child
// and restarts it when it dies by a signal, so MPI never sees the rank die.
Status RunSupervisedNode(const JobOptions& options, const std::string& role, int index,
                         const std::string& endpoint) {
  Supervisor supervisor(SupervisorOptionsFor(options));
  StatusOr<pid_t> pid = supervisor.Start(NodeSpec(options, role, index, endpoint));
  if (!pid.ok()) return pid.status();
  const ChildResult result = supervisor.Wait().at(0);
  if (result.exit_code == 0) return OkStatus();
  return InternalError(result.name + " ended with code " + std::to_string(result.exit_code) +
                       " after " + std::to_string(result.restarts) + " restart(s)");
}

int RunMpi(JobOptions& options, const WorkerProgram& program) {
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const int num_servers = options.scheduler_options.num_servers;
  const int num_workers = size - 1 - num_servers;
  if (num_workers < 1 || num_servers < 1) {
    if (rank == 0) {
      LOG(ERROR) << "mpirun started " << size << " rank(s): rank 0 is the scheduler, ranks 1.."
                 << num_servers << " the servers (--num_servers=" << num_servers
                 << "), so no rank is left for a worker; use mpirun -np " << num_servers + 2
                 << " or more";
    }
    MPI_Finalize();
    return 1;
  }
  options.scheduler_options.num_workers = num_workers;
  zmq::context_t context;
  // Rank 0 binds the scheduler and broadcasts its endpoint; data then moves over ZeroMQ.
  std::unique_ptr<scheduler::SchedulerNode> scheduler;
  std::string endpoint;
  int ok = 1;
  Status prepared = OkStatus();
  if (rank == 0 && program.prepare_scheduler) {
    prepared = program.prepare_scheduler(&options.scheduler_options);
    if (prepared.ok()) prepared = scheduler::ValidateSchedulerOptions(options.scheduler_options);
    if (!prepared.ok()) LOG(ERROR) << "scheduler: " << prepared;
  }
  if (rank == 0 && !prepared.ok()) {
    ok = 0;
  } else if (rank == 0) {
    scheduler = std::make_unique<scheduler::SchedulerNode>(context, options.scheduler_options);
    StatusOr<std::string> bound = scheduler->Bind();
    if (bound.ok()) {
      endpoint = *bound;
    } else {
      LOG(ERROR) << "scheduler: " << bound.status();
      ok = 0;
    }
  }
  MPI_Bcast(&ok, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (!ok) {
    MPI_Finalize();
    return 1;
  }
  int length = static_cast<int>(endpoint.size());
  MPI_Bcast(&length, 1, MPI_INT, 0, MPI_COMM_WORLD);
  endpoint.resize(length);
  MPI_Bcast(endpoint.data(), length, MPI_CHAR, 0, MPI_COMM_WORLD);

  Status s;
  std::string role;
  if (rank == 0) {
    role = "scheduler";
    LOG(INFO) << "mpirun job: scheduler at " << endpoint << ", " << num_servers << " server(s), "
              << num_workers << " worker(s)";
    auto metrics = StartMetrics(options, options.scheduler_options.bind_host, role);
    s = metrics.ok() ? RunScheduler(*scheduler, program) : metrics.status();
  } else if (options.supervise.enabled) {
    const bool server = rank <= num_servers;
    const int index = server ? rank - 1 : rank - 1 - num_servers;
    role = (server ? "server " : "worker ") + std::to_string(index);
    s = RunSupervisedNode(options, server ? "server" : "worker", index, endpoint);
  } else if (rank <= num_servers) {
    role = "server " + std::to_string(rank - 1);
    options.server_options.scheduler = endpoint;
    options.server_options.requested_rank = rank - 1;
    auto metrics = StartMetrics(options, options.server_options.bind_host, role);
    s = metrics.ok() ? server::ServerNode(context, options.server_options).Run() : metrics.status();
  } else {
    role = "worker " + std::to_string(rank - 1 - num_servers);
    options.client_options.scheduler = endpoint;
    options.client_options.requested_rank = rank - 1 - num_servers;
    s = RunWorker(context, options.client_options, program);
  }
  if (!s.ok()) {
    LOG(ERROR) << role << " (rank " << rank << ") failed: " << s;
    google::FlushLogFiles(google::GLOG_INFO);
    std::cerr.flush();
    MPI_Abort(MPI_COMM_WORLD, 1);
    return 1;
  }
  scheduler.reset();
  MPI_Finalize();
  return 0;
}

}  // namespace

bool LaunchedByMpi() {
  for (const char* var : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"}) {
    if (std::getenv(var) != nullptr) return true;
  }
  return false;
}

StatusOr<LaunchMode> ParseLaunchMode(const std::string& role, bool local) {
  if (local && !role.empty() && role != "local") {
    return InvalidArgumentError("--local and --role=" + role +
                                " contradict each other: give one of them");
  }
  if (local || role == "local") return LaunchMode::kLocal;
  if (role.empty()) return LaunchMode::kAuto;
  if (role == "scheduler") return LaunchMode::kScheduler;
  if (role == "server") return LaunchMode::kServer;
  if (role == "worker") return LaunchMode::kWorker;
  return InvalidArgumentError("unknown --role '" + role + "' (scheduler, server, worker or local)");
}

int RunJob(JobOptions options, const WorkerProgram& program) {
  if (options.supervisor_pid > 0) {
    Status bound = BindToSupervisor(options.supervisor_pid);
    if (!bound.ok()) return ExitCode(bound, "supervised node");
  }
  LaunchMode mode = options.mode;
  if (mode == LaunchMode::kAuto) mode = LaunchedByMpi() ? LaunchMode::kMpi : LaunchMode::kLocal;
  if (options.supervise.enabled) {
    if (mode != LaunchMode::kLocal && mode != LaunchMode::kMpi) {
      LOG(ERROR) << "--supervise is for local mode and mpirun; a process started with --role is "
                    "restarted by its own supervisor (systemd, Kubernetes) with the same flags";
      return 1;
    }
    if (options.scheduler_options.model_dir.empty()) {
      LOG(ERROR) << "--supervise needs --model_dir: a restarted server rejoins the job by "
                    "rolling every server back to the last committed model version";
      return 1;
    }
    if (options.scheduler_options.recovery_timeout.count() <= 0) {
      LOG(ERROR) << "--supervise needs --recovery_timeout_ms > 0: with 0 a lost server ends the "
                    "job before its restart can rejoin it";
      return 1;
    }
  }
  if ((mode == LaunchMode::kServer || mode == LaunchMode::kWorker) && options.scheduler.empty()) {
    LOG(ERROR) << "a server or worker started with --role needs --scheduler=tcp://host:port";
    return 1;
  }
  if (mode != LaunchMode::kServer && mode != LaunchMode::kWorker && !options.scheduler.empty()) {
    LOG(ERROR) << "--scheduler is only for processes started with --role=server or --role=worker";
    return 1;
  }
  if (mode != LaunchMode::kServer && mode != LaunchMode::kWorker) {
    // The scheduler this process creates (local, mpi rank 0 or --role=scheduler)
    // reports the workers' live metrics to the program.
    if (program.progress) {
      options.scheduler_options.on_progress = program.progress;
      options.scheduler_options.progress_interval = program.progress_interval;
    }
    if (mode == LaunchMode::kMpi) {
      options.scheduler_options.num_workers = std::max(1, options.scheduler_options.num_workers);
    } else if (program.prepare_scheduler) {
      // Under mpirun only rank 0 prepares (RunMpi), once it knows the worker count.
      Status prepared = program.prepare_scheduler(&options.scheduler_options);
      if (!prepared.ok()) return ExitCode(prepared, "configuration");
    }
    Status valid = scheduler::ValidateSchedulerOptions(options.scheduler_options);
    if (!valid.ok()) return ExitCode(valid, "configuration");
  }
  if (options.metrics_port >= 0 && options.metrics != nullptr) {
    options.server_options.metrics = options.metrics;  // servers of this process record too
  }
  switch (mode) {
    case LaunchMode::kMpi:
      return RunMpi(options, program);
    case LaunchMode::kLocal:
      if (options.supervise.enabled) return RunLocalSupervised(options, program);
      return RunLocal(options, program);
    case LaunchMode::kScheduler: {
      zmq::context_t context;
      scheduler::SchedulerNode node(context, options.scheduler_options);
      StatusOr<std::string> endpoint = node.Bind();
      if (!endpoint.ok()) return ExitCode(endpoint.status(), "scheduler");
      std::cout << "scheduler endpoint: " << *endpoint << std::endl;
      LOG(INFO) << "scheduler listening at " << *endpoint
                << "; start servers and workers with --scheduler=" << *endpoint;
      auto metrics = StartMetrics(options, options.scheduler_options.bind_host, "scheduler");
      if (!metrics.ok()) return ExitCode(metrics.status(), "scheduler");
      return ExitCode(RunScheduler(node, program), "scheduler");
    }
    case LaunchMode::kServer: {
      zmq::context_t context;
      options.server_options.scheduler = options.scheduler;
      auto metrics = StartMetrics(options, options.server_options.bind_host, "server");
      if (!metrics.ok()) return ExitCode(metrics.status(), "server");
      return ExitCode(server::ServerNode(context, options.server_options).Run(), "server");
    }
    case LaunchMode::kWorker: {
      zmq::context_t context;
      options.client_options.scheduler = options.scheduler;
      return ExitCode(RunWorker(context, options.client_options, program), "worker");
    }
    case LaunchMode::kAuto:
      break;
  }
  return 1;
}

}  // namespace eddy::job
