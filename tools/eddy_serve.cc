// eddy_serve: a serving replica. Follows the model versions exported by a job
// (through the scheduler's version service, or a local directory) and answers
// PREDICT / SERVE_CONTROL requests (docs/protocol.md, "Serving").
//   build/bin/eddy_serve --scheduler=tcp://host:port --port=7000
//   build/bin/eddy_serve --model_dir=/data/export
//   build/bin/eddy_serve --model_dir=/data/export --http_port=8501   # + HTTP/JSON, /metrics
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <signal.h>
#include <stdlib.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "common/metrics.h"
#include "serving/http_frontend.h"
#include "serving/replica.h"
#include "serving/serving_metrics.h"
#include "serving/serve_client.h"

DEFINE_string(scheduler, "",
              "Endpoint of the version service that exports the model versions "
              "(tcp://host:port). Versions are fetched in checksummed chunks into --cache_dir; "
              "no shared filesystem is needed. Give this or --model_dir.");
DEFINE_string(model_dir, "",
              "A local root directory of model versions (v<12 digits>/ directories), read in "
              "place and rescanned for new versions. Give this or --scheduler.");
DEFINE_string(bind, "127.0.0.1",
              "Address the prediction socket binds to (0.0.0.0 for every interface).");
DEFINE_int32(port, 0,
             "Port of the prediction socket (ZeroMQ ROUTER; REQ and DEALER clients); 0: "
             "an ephemeral port, printed at start.");
DEFINE_string(cache_dir, "",
              "Where fetched versions are written (with --scheduler). Empty: a fresh temporary "
              "directory, removed at exit.");
DEFINE_int32(max_versions_cached, 3,
             "Older model versions kept in memory once loaded by a pin (>= 1), for pinning and "
             "rollback; each is a separate immutable model loaded from its files. The newest "
             "version is always held (as two compact copies, updated in place by each delta) "
             "and does not count; the pinned version is never evicted.");
DEFINE_int32(watch_timeout_ms, 1000,
             "Long-poll timeout of a version watch; a new version is seen as soon as it is "
             "committed either way.");
DEFINE_int32(scan_interval_ms, 50, "With --model_dir: how often the directory is rescanned.");
DEFINE_string(replica, "",
              "Client mode: talk to the running replica at this endpoint (tcp://host:port) "
              "instead of serving; see --command.");
DEFINE_string(command, "status",
              "Client mode (--replica): status | pin | unpin | rollback (with --model_version) | "
              "predict (rows in the model's text format from --rows, one per line; prints one "
              "probability per row and the version that answered).");
DEFINE_uint64(model_version, 0, "Client mode: the version to pin or roll back to.");
DEFINE_string(rows, "-", "Client mode, predict: file of rows ('-': stdin).");
DEFINE_int32(http_port, -1,
             "Port of the HTTP/JSON API on --bind, in TensorFlow Serving's REST convention "
             "(POST /v1/models/<--model_name>:predict, GET /v1/models/<name>[/metadata]) and "
             "Prometheus metrics (GET /metrics); docs/http.md. -1: off; 0: an ephemeral port, "
             "printed at start.");
DEFINE_int32(http_threads, 4,
             "Threads answering HTTP requests (each holds one keep-alive connection at a time); "
             ">= 1.");
DEFINE_string(model_name, "eddy",
              "The model's name in the HTTP API's paths (/v1/models/<name>); other names get 404.");
DEFINE_int32(timeout_ms, 10000, "Client mode: how long to wait for the replica's answer.");

namespace eddy {
namespace {

StatusOr<serving::ReplicaOptions> OptionsFromFlags(std::string* temp_cache) {
  serving::ReplicaOptions o;
  if (FLAGS_scheduler.empty() == FLAGS_model_dir.empty()) {
    return InvalidArgumentError(
        "give exactly one of --scheduler=tcp://host:port (the version service) and "
        "--model_dir=<root of model versions>");
  }
  o.version_endpoint = FLAGS_scheduler;
  o.model_dir = FLAGS_model_dir;
  o.bind_host = FLAGS_bind;
  if (FLAGS_port < 0 || FLAGS_port > 65535) return InvalidArgumentError("--port: 0..65535");
  o.port = FLAGS_port;
  if (FLAGS_max_versions_cached < 1) {
    return InvalidArgumentError("--max_versions_cached must be >= 1");
  }
  o.max_versions_cached = FLAGS_max_versions_cached;
  if (FLAGS_watch_timeout_ms < 10 || FLAGS_scan_interval_ms < 1) {
    return InvalidArgumentError("--watch_timeout_ms must be >= 10 and --scan_interval_ms >= 1");
  }
  o.watch_timeout = std::chrono::milliseconds(FLAGS_watch_timeout_ms);
  o.scan_interval = std::chrono::milliseconds(FLAGS_scan_interval_ms);
  if (!o.version_endpoint.empty()) {
    if (FLAGS_cache_dir.empty()) {
      std::string tmpl = (std::filesystem::temp_directory_path() / "eddy_serve_XXXXXX").string();
      if (::mkdtemp(tmpl.data()) == nullptr) {
        return UnavailableError("cannot create a temporary cache directory");
      }
      *temp_cache = tmpl;
      o.cache_dir = tmpl;
    } else {
      std::error_code ec;
      std::filesystem::create_directories(FLAGS_cache_dir, ec);
      if (ec) return UnavailableError("--cache_dir=" + FLAGS_cache_dir + ": " + ec.message());
      o.cache_dir = FLAGS_cache_dir;
    }
  }
  return o;
}

// Client mode: one command to a running replica.
int RunClient() {
  zmq::context_t context;
  serving::ServeClient client(context, std::chrono::milliseconds(FLAGS_timeout_ms));
  Status connected = client.Connect(FLAGS_replica);
  if (!connected.ok()) {
    std::fprintf(stderr, "eddy_serve: --replica: %s\n", connected.ToString().c_str());
    return 2;
  }
  if (FLAGS_command == "predict") {
    std::vector<std::string> rows;
    std::ifstream file;
    std::istream* in = &std::cin;
    if (FLAGS_rows != "-") {
      file.open(FLAGS_rows);
      if (!file) {
        std::fprintf(stderr, "eddy_serve: cannot read --rows=%s\n", FLAGS_rows.c_str());
        return 2;
      }
      in = &file;
    }
    for (std::string line; std::getline(*in, line);) {
      if (!line.empty()) rows.push_back(line);
    }
    auto p = client.Predict(rows);
    if (!p.ok()) {
      std::fprintf(stderr, "eddy_serve: %s\n", p.status().ToString().c_str());
      return 1;
    }
    for (float x : p->probabilities) std::printf("%.6f\n", x);
    std::printf("# version %llu\n", static_cast<unsigned long long>(p->version));
    return 0;
  }
  proto::ServeControlRequest::Action action;
  if (FLAGS_command == "status") {
    action = proto::ServeControlRequest::STATUS;
  } else if (FLAGS_command == "pin") {
    action = proto::ServeControlRequest::PIN;
  } else if (FLAGS_command == "unpin") {
    action = proto::ServeControlRequest::UNPIN;
  } else if (FLAGS_command == "rollback") {
    action = proto::ServeControlRequest::ROLLBACK;
  } else {
    std::fprintf(stderr,
                 "eddy_serve: unknown --command=%s (status, pin, unpin, rollback, predict)\n",
                 FLAGS_command.c_str());
    return 2;
  }
  if ((action == proto::ServeControlRequest::PIN ||
       action == proto::ServeControlRequest::ROLLBACK) &&
      FLAGS_model_version == 0) {
    std::fprintf(stderr, "eddy_serve: --command=%s needs --model_version=N\n",
                 FLAGS_command.c_str());
    return 2;
  }
  auto status = client.Control(action, FLAGS_model_version);
  if (!status.ok()) {
    std::fprintf(stderr, "eddy_serve: %s\n", status.status().ToString().c_str());
    return 1;
  }
  std::printf("%s", status->DebugString().c_str());
  return 0;
}

int Main() {
  if (!FLAGS_replica.empty()) return RunClient();
  std::string temp_cache;
  StatusOr<serving::ReplicaOptions> options = OptionsFromFlags(&temp_cache);
  if (!options.ok()) {
    std::fprintf(stderr, "eddy_serve: %s\n", options.status().ToString().c_str());
    return 2;
  }
  // SIGINT/SIGTERM are taken by a thread of their own, which stops the replica.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (FLAGS_http_port < -1 || FLAGS_http_port > 65535 || FLAGS_http_threads < 1) {
    std::fprintf(stderr, "eddy_serve: --http_port must be -1 (off), 0 (ephemeral) or a port, and "
                         "--http_threads >= 1\n");
    return 2;
  }
  MetricsRegistry registry;
  serving::ServingMetrics metrics(&registry);
  options->metrics = &metrics;
  zmq::context_t context;
  serving::Replica replica(context, *options);
  metrics.Watch(&replica);
  std::unique_ptr<serving::HttpFrontend> http;
  if (FLAGS_http_port >= 0) {
    serving::HttpFrontendOptions h;
    h.http.bind_host = FLAGS_bind;
    h.http.port = FLAGS_http_port;
    h.http.threads = FLAGS_http_threads;
    h.model_name = FLAGS_model_name;
    http = std::make_unique<serving::HttpFrontend>(&replica, &metrics, &registry, h);
  }
  StatusOr<std::string> endpoint = replica.Bind();
  StatusOr<int> http_port = -1;
  if (endpoint.ok() && http != nullptr) http_port = http->Start();
  int rc = 0;
  if (!endpoint.ok() || !http_port.ok()) {
    std::fprintf(stderr, "eddy_serve: %s\n",
                 (endpoint.ok() ? http_port.status().WithContext("--http_port") : endpoint.status())
                     .ToString()
                     .c_str());
    rc = 1;
  } else {
    std::printf("eddy_serve: predictions on %s (versions from %s)\n", endpoint->c_str(),
                options->model_dir.empty() ? options->version_endpoint.c_str()
                                           : options->model_dir.c_str());
    if (http != nullptr) {
      std::printf("eddy_serve: HTTP on http://%s:%d (/v1/models/%s, /metrics)\n",
                  FLAGS_bind.c_str(), *http_port, FLAGS_model_name.c_str());
    }
    std::fflush(stdout);
    std::atomic<bool> done{false};
    std::jthread signal_thread([&] {
      const timespec tick{0, 200'000'000};
      while (!done.load()) {
        if (sigtimedwait(&signals, nullptr, &tick) > 0) {
          LOG(INFO) << "eddy_serve: signal received, stopping";
          replica.Stop();
          return;
        }
      }
    });
    Status s = replica.Run();
    done.store(true);
    if (http != nullptr) http->Stop();
    if (!s.ok()) {
      std::fprintf(stderr, "eddy_serve: %s\n", s.ToString().c_str());
      rc = 1;
    }
  }
  if (!temp_cache.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(temp_cache, ec);
  }
  return rc;
}

}  // namespace
}  // namespace eddy

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "a serving replica: eddy_serve --scheduler=tcp://host:port | --model_dir=<root> "
      "[--port=N] [--http_port=N]\n  client: eddy_serve --replica=tcp://host:port --command=status|pin|unpin|"
      "rollback|predict [--model_version=N] [--rows=FILE]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  return eddy::Main();
}
