#include "job/job_flags.h"

#include <gflags/gflags.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <set>

#include "common/table_config.h"
#include "model_store/chain.h"
#include "model_store/version_dir.h"
#include "model_store/version_reader.h"

DECLARE_bool(help);  // defined by gflags

DEFINE_string(
    role, "",
    "Role of this process: scheduler, server, worker or local. Empty: the MPI rank decides under "
    "mpirun (rank 0 scheduler, ranks 1..num_servers servers, the rest workers), otherwise local.");
DEFINE_bool(local, false,
            "Run the scheduler, the servers and the workers as threads of this process.");
DEFINE_string(scheduler, "",
              "Scheduler endpoint (tcp://host:port) for --role=server and --role=worker.");
DEFINE_string(bind, "127.0.0.1",
              "Interface the scheduler and the servers listen on (0.0.0.0 for all).");
DEFINE_int32(recovery_timeout_ms, 60000,
             "With --model_dir, a server or worker that stops answering makes the job roll back "
             "to the last committed version instead of failing: every server reloads it and every "
             "worker goes on from its positions. The scheduler waits this long for a replacement "
             "(the same command restarted by --supervise, systemd or Kubernetes) and for the "
             "servers to load. 0: a lost node fails the job.");
DEFINE_int32(port, 0, "Scheduler port (--role=scheduler); 0 picks a free one and prints it.");
DEFINE_int32(server_port, 0, "Server data port (--role=server); 0 picks a free one.");
DEFINE_int32(num_servers, 1, "Number of server processes (threads in local mode).");
DEFINE_int32(
    num_workers, 1,
    "Number of workers (local mode and --role launches). Under mpirun it is the ranks left after "
    "the scheduler and the servers.");
DEFINE_string(tables, "emb:dim=16,opt=adagrad,lr=0.05",
              "Tables of the job, ';'-separated: name:dim=N,... (sparse) or name:shape=AxB,... "
              "(dense); keys: "
              "opt=sgd|adagrad|adam|ftrl, lr, beta1, beta2, eps, l1, l2, acc, ftrl_beta, "
              "init=zeros|uniform|normal, "
              "init_scale, seed.");
DEFINE_int32(server_threads, 2, "Threads each server uses to apply a request.");
DEFINE_int32(server_shards, 64, "Internal shards per sparse table on each server.");
DEFINE_int32(heartbeat_interval_ms, 500,
             "Interval between heartbeats of every node. A node whose connection closed is "
             "declared lost after two intervals (a killed process is noticed that fast).");
DEFINE_int32(
    node_timeout_ms, 30000,
    "A node silent for this long is declared dead (a closed connection is noticed within two "
    "heartbeats): with --model_dir it is replaced and the job rolls back "
    "(--recovery_timeout_ms), otherwise it ends the job (a worker: unless "
    "--tolerate_worker_failures).");
DEFINE_int32(registration_timeout_s, 120,
             "How long the scheduler waits for every node to register.");
DEFINE_int32(request_timeout_ms, 30000, "A push or pull not answered within this time fails.");
DEFINE_uint64(max_request_keys, 1 << 24, "Largest number of keys a server accepts in one request.");
DEFINE_int32(
    staleness, -1,
    "Staleness bound s: a pull made at clock c (mini-batches done) is answered once every "
    "worker has finished clock c - s; 0 = synchronous pulls, -1 = unbounded (asynchronous).");
DEFINE_string(aggregate, "none",
              "How servers apply pushes: none (at once), or sum / mean (all workers' gradients of "
              "a clock together once every worker finished it; needs --staleness=0).");
DEFINE_string(
    policy, "",
    "Update policy: bsp (synchronous: every worker's gradients of a clock are applied together, "
    "then everyone pulls; --aggregate picks sum or mean, default mean), ssp (stale-synchronous: "
    "a pull may run at most --staleness clocks ahead of the slowest worker) or asp (asynchronous, "
    "never waits). Empty: as --staleness and --aggregate say (asp by default).");
DEFINE_bool(tolerate_worker_failures, false,
            "When a worker is lost and no replacement registers within 5 s (or half of "
            "--recovery_timeout_ms), a live worker takes over its share of the stream, as a second "
            "worker of its process (needs --model_dir). Without --model_dir: go on with the live "
            "workers only (the lost one no longer counts toward barriers and the staleness bound, "
            "and the rest of its share is not trained). Off: a lost worker waits for a "
            "replacement (--model_dir) or ends the job.");
DEFINE_string(model_dir, "",
              "Directory of the job's model versions (docs/model_format.md). The scheduler and "
              "every server must see it at the same path (one host, or a shared filesystem). "
              "Empty: no versions.");
DEFINE_string(snapshot_every, "0",
              "Take a consistent model version this often: a duration (30s, 500ms, 5m) or a row "
              "count (1000000rows, over all workers, checked at progress ticks). 0: only on "
              "demand and at the end of the job.");
DEFINE_bool(snapshot_at_end, true, "With --model_dir: take a last version when the job ends.");
DEFINE_int32(full_every, 10,
             "Every Nth model version is full; the others are deltas (rows changed since the "
             "previous version, plus tombstones of evicted rows). 1: all full.");
DEFINE_uint32(evict_after_versions, 0,
              "Evict sparse rows not updated in this many model versions (feature expiry; "
              "deltas carry their tombstones). 0: never. Needs --model_dir.");
DEFINE_int32(serve_port, -1,
             "Serve the committed model versions to serving replicas (eddy_serve "
             "--scheduler=tcp://host:PORT) on this port of --bind: -1 off, 0 any free port "
             "(logged). Needs --model_dir.");
DEFINE_int32(metrics_port, -1,
             "Prometheus metrics (GET /metrics, docs/http.md) on this port of --bind: the "
             "scheduler's job metrics (rows, AUC, versions, recoveries) and, in servers, request "
             "counts, latency and bytes. Each process that runs the scheduler or a server "
             "(--role=scheduler|server, mpirun ranks, --local: one for all) binds its own; 0 picks "
             "a free port (logged: 'metrics on http://...'), as needed for several processes on "
             "one host. -1: off.");
DEFINE_int32(keep_versions, 3,
             "Retention: keep the newest N full versions (and the deltas built on them).");
DEFINE_string(resume_from, "",
              "Resume from a model version: 'latest' (the newest one in --model_dir; none yet: "
              "start afresh, so the same command serves the first launch and every relaunch), "
              "its directory (.../v000000000007), a model root "
              "(its newest version) or a version number inside --model_dir. Servers load its "
              "rows, dense tensors and optimizer state; each worker skips the rows it had "
              "consumed. Needs the same --num_workers and --data as the job that wrote it.");
DEFINE_bool(supervise, false,
            "Local mode and mpirun: run every server and worker as a child process that is "
            "restarted when it dies by a signal (kill -9, a crash); a restarted server rejoins "
            "through the rollback of --recovery_timeout_ms. A node that exits (0 or an error) is "
            "not restarted. Needs --model_dir. Local mode: the scheduler runs in this process; "
            "mpirun: each rank supervises its node, so MPI never sees a rank die.");
DEFINE_int32(max_restarts, 10, "With --supervise: restarts allowed per node process.");
DEFINE_int32(supervisor_pid, 0,
             "Internal, set by --supervise on the nodes it starts: the supervising process's "
             "pid; this process dies with it.");
DEFINE_int32(requested_rank, -1,
             "Internal, set by --supervise on the nodes it starts: the server or worker id this "
             "process (--role=server or worker) asks the scheduler for. -1: any free one.");
DEFINE_int32(max_message_mb, 1024,
             "Largest message a socket accepts, in MiB; larger ones are dropped.");

namespace eddy::job {

namespace {

// "30s", "500ms", "5m", "2h" -> interval; "1000000rows" -> rows; "0" -> neither.
Status ParseSnapshotEvery(const std::string& v, scheduler::SchedulerOptions* o) {
  auto bad = [&]() {
    return InvalidArgumentError("--snapshot_every='" + v +
                                "': use a duration (30s, 500ms, 5m, 1h), a row count "
                                "(1000000rows) or 0");
  };
  if (v.empty() || v == "0") return OkStatus();
  size_t end = 0;
  double x = 0;
  try {
    x = std::stod(v, &end);
  } catch (...) {
    return bad();
  }
  const std::string unit = v.substr(end);
  if (!(x > 0)) return bad();
  if (unit == "rows") {
    o->snapshot_every_rows = static_cast<uint64_t>(x);
    return OkStatus();
  }
  double ms = 0;
  if (unit == "ms") {
    ms = x;
  } else if (unit == "s") {
    ms = x * 1e3;
  } else if (unit == "m") {
    ms = x * 60e3;
  } else if (unit == "h") {
    ms = x * 3600e3;
  } else {
    return bad();
  }
  o->snapshot_interval = std::chrono::milliseconds(std::max<int64_t>(1, static_cast<int64_t>(ms)));
  return OkStatus();
}

// --resume_from: "latest" (the newest version in --model_dir, none: a fresh
// start), a version directory, a model root (newest version) or a number inside
// --model_dir.
Status ParseResumeFrom(const std::string& v, scheduler::SchedulerOptions* o) {
  if (v.empty()) return OkStatus();
  std::string root;
  uint64_t version = 0;
  const bool number = v.find_first_not_of("0123456789") == std::string::npos;
  if (v == "latest") {
    if (FLAGS_model_dir.empty()) {
      return InvalidArgumentError("--resume_from=latest resumes from the newest version in "
                                  "--model_dir: give --model_dir");
    }
    std::error_code error;
    const bool exists = std::filesystem::exists(FLAGS_model_dir, error);
    StatusOr<std::vector<uint64_t>> versions =
        exists ? model_store::ListVersions(FLAGS_model_dir)
               : StatusOr<std::vector<uint64_t>>(std::vector<uint64_t>{});
    if (!versions.ok()) return versions.status().WithContext("--resume_from=latest");
    if (versions->empty()) {
      LOG(INFO) << "--resume_from=latest: no version in " << FLAGS_model_dir
                << " yet; starting afresh";
      return OkStatus();
    }
    root = FLAGS_model_dir;
    version = versions->back();
  } else if (number) {
    if (FLAGS_model_dir.empty()) {
      return InvalidArgumentError("--resume_from=" + v +
                                  " is a version number: which --model_dir is it in?");
    }
    root = FLAGS_model_dir;
    version = std::stoull(v);
  } else if (std::filesystem::exists(std::filesystem::path(v) / "manifest.pb")) {
    ASSIGN_OR_RETURN(model_store::VersionReader reader, model_store::VersionReader::Open(v));
    version = reader.version();
    std::filesystem::path dir = std::filesystem::path(v).lexically_normal();
    if (!dir.has_filename()) dir = dir.parent_path();
    root = dir.parent_path().string();
    if (root.empty()) root = ".";
  } else {
    root = v;
    auto versions = model_store::ListVersions(root);
    if (!versions.ok()) return versions.status().WithContext("--resume_from");
    if (versions->empty()) {
      return NotFoundError("--resume_from=" + v + ": no committed version in this directory");
    }
    version = versions->back();
  }
  RETURN_IF_ERROR(model_store::ResolveChain(root, version).status().WithContext("--resume_from"));
  ASSIGN_OR_RETURN(
      model_store::VersionReader reader,
      model_store::VersionReader::Open(root + "/" + model_store::VersionDirName(version)));
  if (reader.manifest().serving()) {
    return InvalidArgumentError("--resume_from: version " + std::to_string(version) +
                                " is a serving export without optimizer state; resume from a "
                                "training version");
  }
  o->resume_root = root;
  o->resume_version = version;
  o->resume_positions = scheduler::ResumePositionsOf(reader.manifest());
  for (size_t i = 0; i < o->resume_positions.size(); ++i) {
    if (o->resume_positions[i].worker() != static_cast<int>(i)) {
      return DataLossError("--resume_from: version " + std::to_string(version) +
                           " has no stream position for worker " + std::to_string(i));
    }
  }
  return OkStatus();
}

// Maps --policy onto the staleness bound and the aggregation of pushes, refusing
// contradictory combinations with what to change.
Status ApplyPolicy(const std::string& policy, scheduler::SchedulerOptions* options) {
  const bool staleness_set = !gflags::GetCommandLineFlagInfoOrDie("staleness").is_default;
  const bool aggregate_set = !gflags::GetCommandLineFlagInfoOrDie("aggregate").is_default;
  if (policy.empty()) return OkStatus();
  if (policy == "asp") {
    if (staleness_set && options->staleness != -1) {
      return InvalidArgumentError(
          "--policy=asp never waits, but --staleness=" + std::to_string(options->staleness) +
          " bounds it: drop --staleness or use --policy=ssp");
    }
    if (aggregate_set && options->aggregate != "none") {
      return InvalidArgumentError("--policy=asp applies pushes at once; --aggregate=" +
                                  options->aggregate + " needs --policy=bsp");
    }
    options->staleness = -1;
    options->aggregate = "none";
    return OkStatus();
  }
  if (policy == "ssp") {
    if (!staleness_set || options->staleness < 1) {
      return InvalidArgumentError(
          "--policy=ssp needs --staleness=s with s >= 1 (s = 0 is --policy=bsp)");
    }
    if (aggregate_set && options->aggregate != "none") {
      return InvalidArgumentError("--aggregate=" + options->aggregate +
                                  " applies a clock's gradients together, which needs "
                                  "--policy=bsp (staleness 0)");
    }
    options->aggregate = "none";
    return OkStatus();
  }
  if (policy == "bsp") {
    if (staleness_set && options->staleness != 0) {
      return InvalidArgumentError(
          "--policy=bsp is staleness 0; --staleness=" + std::to_string(options->staleness) +
          " contradicts it (use --policy=ssp for a bound s > 0)");
    }
    options->staleness = 0;
    if (!aggregate_set || options->aggregate == "none") options->aggregate = "mean";
    if (aggregate_set && FLAGS_aggregate == "none") {
      return InvalidArgumentError(
          "--policy=bsp applies every worker's gradients of a clock together: --aggregate must "
          "be sum or mean");
    }
    return OkStatus();
  }
  return InvalidArgumentError("unknown --policy '" + policy + "' (bsp, ssp or asp)");
}

// The flags a supervised node is started with: every flag set on this command
// line (also through --flagfile), but for those that choose the role, belong to
// the scheduler or are set for each node by the launcher.
std::vector<std::string> SupervisedNodeFlags() {
  static const std::set<std::string> kNotForNodes = {
      "role",          "local",        "scheduler",      "supervise",     "max_restarts",
      "supervisor_pid", "requested_rank", "port",         "metrics_port",         "resume_from",   "metrics_out",
      "flagfile",      "fromenv",      "tryfromenv"};
  std::vector<gflags::CommandLineFlagInfo> flags;
  gflags::GetAllFlags(&flags);
  std::vector<std::string> args;
  for (const auto& f : flags) {
    if (kNotForNodes.count(f.name) > 0) continue;
    if (f.is_default && f.current_value == f.default_value) continue;
    args.push_back("--" + f.name + "=" + f.current_value);
  }
  return args;
}

}  // namespace

void ParseFlags(int* argc, char*** argv) {
  gflags::ParseCommandLineNonHelpFlags(argc, argv, true);
  if (FLAGS_help) {
    std::printf("%s\n", gflags::ProgramUsage());
    std::vector<gflags::CommandLineFlagInfo> flags;
    gflags::GetAllFlags(&flags);
    std::map<std::string, std::vector<const gflags::CommandLineFlagInfo*>> by_file;
    // Eddy's flags are those defined in files of this source tree.
    const std::string self = __FILE__;
    const std::string root = self.substr(0, self.size() - std::string("job/job_flags.cc").size());
    for (const auto& f : flags) {
      if (f.filename.rfind(root, 0) == 0) by_file[f.filename.substr(root.size())].push_back(&f);
    }
    for (const auto& [file, list] : by_file) {
      std::printf("\n  Flags from %s:\n", file.c_str());
      for (const auto* f : list) {
        std::printf("    --%s (%s) type: %s default: %s\n", f->name.c_str(), f->description.c_str(),
                    f->type.c_str(),
                    f->type == "string" ? ("\"" + f->default_value + "\"").c_str()
                                        : f->default_value.c_str());
      }
    }
    std::printf(
        "\n  --flagfile=FILE reads flags from FILE; --helpfull lists the logging flags too.\n");
    std::exit(0);
  }
  gflags::HandleCommandLineHelpFlags();
}

StatusOr<JobOptions> JobOptionsFromFlags() {
  JobOptions o;
  ASSIGN_OR_RETURN(o.mode, ParseLaunchMode(FLAGS_role, FLAGS_local));
  o.scheduler = FLAGS_scheduler;
  if (FLAGS_supervise) {
    if (FLAGS_max_restarts < 0) return InvalidArgumentError("--max_restarts must be >= 0");
    o.supervise.enabled = true;
    o.supervise.max_restarts = FLAGS_max_restarts;
    o.supervise.node_flags = SupervisedNodeFlags();
  }
  if (FLAGS_supervisor_pid < 0) return InvalidArgumentError("--supervisor_pid must be > 0");
  o.supervisor_pid = FLAGS_supervisor_pid;
  if (FLAGS_requested_rank >= 0 && o.mode != LaunchMode::kServer &&
      o.mode != LaunchMode::kWorker) {
    return InvalidArgumentError("--requested_rank is only for --role=server or --role=worker");
  }
  if (FLAGS_port < 0 || FLAGS_port > 65535)
    return InvalidArgumentError("--port must be in [0, 65535]");
  if (FLAGS_server_port < 0 || FLAGS_server_port > 65535)
    return InvalidArgumentError("--server_port must be in [0, 65535]");
  if (FLAGS_server_port != 0 && o.mode != LaunchMode::kServer) {
    return InvalidArgumentError(
        "--server_port only applies to --role=server (other launches start several servers)");
  }
  if (FLAGS_server_threads < 1 || FLAGS_server_threads > 256)
    return InvalidArgumentError("--server_threads must be in [1, 256]");
  if (FLAGS_request_timeout_ms <= 0)
    return InvalidArgumentError("--request_timeout_ms must be > 0");
  if (FLAGS_max_message_mb <= 0) return InvalidArgumentError("--max_message_mb must be > 0");
  if (FLAGS_max_request_keys == 0) return InvalidArgumentError("--max_request_keys must be > 0");
  if (FLAGS_registration_timeout_s <= 0)
    return InvalidArgumentError("--registration_timeout_s must be > 0");

  scheduler::SchedulerOptions& s = o.scheduler_options;
  s.bind_host = FLAGS_bind;
  s.port = FLAGS_port;
  s.num_servers = FLAGS_num_servers;
  s.num_workers = FLAGS_num_workers;
  StatusOr<std::vector<proto::TableConfig>> tables = ParseTableSpecs(FLAGS_tables);
  if (!tables.ok()) return tables.status().WithContext("--tables");
  s.tables = std::move(tables).value();
  s.heartbeat_interval = std::chrono::milliseconds(FLAGS_heartbeat_interval_ms);
  s.node_timeout = std::chrono::milliseconds(FLAGS_node_timeout_ms);
  if (FLAGS_recovery_timeout_ms < 0) {
    return InvalidArgumentError("--recovery_timeout_ms must be >= 0 (0: a lost server fails the job)");
  }
  s.recovery_timeout = std::chrono::milliseconds(FLAGS_recovery_timeout_ms);
  s.registration_timeout = std::chrono::seconds(FLAGS_registration_timeout_s);
  s.server_shards = static_cast<uint32_t>(std::max(0, FLAGS_server_shards));
  s.max_request_keys = FLAGS_max_request_keys;
  s.staleness = FLAGS_staleness;
  s.tolerate_worker_failures = FLAGS_tolerate_worker_failures;
  s.aggregate = FLAGS_aggregate;
  RETURN_IF_ERROR(ApplyPolicy(FLAGS_policy, &s));
  s.model_dir = FLAGS_model_dir;
  RETURN_IF_ERROR(ParseSnapshotEvery(FLAGS_snapshot_every, &s));
  s.snapshot_at_end = FLAGS_snapshot_at_end;
  s.keep_full_versions = FLAGS_keep_versions;
  s.full_every = FLAGS_full_every;
  s.serve_port = FLAGS_serve_port;
  if (s.serve_port >= 0 && s.model_dir.empty()) {
    return InvalidArgumentError("--serve_port serves model versions: it needs --model_dir");
  }
  if (s.serve_port > 65535) return InvalidArgumentError("--serve_port must be in [-1, 65535]");
  s.evict_after_versions = FLAGS_evict_after_versions;
  if (s.evict_after_versions > 0 && s.model_dir.empty()) {
    return InvalidArgumentError(
        "--evict_after_versions counts model versions: it needs --model_dir");
  }
  // Only the scheduler reads the version; the others learn it from the cluster view.
  if (o.mode != LaunchMode::kServer && o.mode != LaunchMode::kWorker) {
    RETURN_IF_ERROR(ParseResumeFrom(FLAGS_resume_from, &s));
  }

  const int64_t max_bytes = int64_t{FLAGS_max_message_mb} << 20;
  o.server_options.bind_host = FLAGS_bind;
  o.server_options.port = FLAGS_server_port;
  o.server_options.num_threads = FLAGS_server_threads;
  o.server_options.max_message_bytes = max_bytes;
  o.server_options.registration_timeout = s.registration_timeout;
  o.server_options.requested_rank = FLAGS_requested_rank;
  o.client_options.requested_rank = FLAGS_requested_rank;
  o.client_options.request_timeout = std::chrono::milliseconds(FLAGS_request_timeout_ms);
  o.client_options.registration_timeout = s.registration_timeout;
  o.client_options.max_message_bytes = max_bytes;
  if (FLAGS_metrics_port < -1 || FLAGS_metrics_port > 65535) {
    return InvalidArgumentError("--metrics_port must be -1 (off), 0 (a free port) or a port");
  }
  o.metrics_port = FLAGS_metrics_port;
  return o;
}

}  // namespace eddy::job
