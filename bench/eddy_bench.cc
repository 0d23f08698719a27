// eddy_bench: push/pull throughput and latency of a running Eddy cluster.
// Each worker repeatedly pushes gradients for a request of distinct keys and then
// pulls the same keys (the server applies the optimizer), with a fixed number of
// requests in flight; optionally the same for one large dense tensor. The
// scheduler prints one summary line for the whole job.
//
//   eddy_bench --preset=pslite                  # local: 1 server + 1 worker as threads
//   mpirun -np 3 eddy_bench --preset=pslite     # 1 scheduler, 1 server, 1 worker processes
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <unordered_set>

#include "bench/bench_report.h"
#include "common/partition.h"
#include "job/job_flags.h"

DEFINE_string(preset, "",
              "A named workload: 'pslite' = the reference workload (1M-id vocabulary, 10,000 "
              "distinct ids per "
              "request, dim 16, uniform, AdaGrad, 1 request in flight, 2 s warm-up, 10 s "
              "measured). Flags given "
              "explicitly override the preset.");
DEFINE_string(mode, "sparse", "What to measure: sparse, dense or both.");
DEFINE_uint64(vocab, 1000000, "Number of distinct 64-bit ids requests draw from.");
DEFINE_uint64(keys_per_request, 10000, "Distinct ids per request.");
DEFINE_int32(dim, 16, "Floats per id.");
DEFINE_string(distribution, "uniform", "How ids are drawn: uniform or zipf.");
DEFINE_double(zipf_s, 1.0, "Exponent of the Zipf distribution.");
DEFINE_string(optimizer, "adagrad", "Optimizer the servers apply: sgd, adagrad, adam or ftrl.");
DEFINE_int32(inflight, 1, "Requests in flight per worker.");
DEFINE_bool(fused, false, "Use one PushPull round trip instead of a push then a pull.");
DEFINE_double(warmup_s, 2, "Seconds of warm-up before measuring.");
DEFINE_double(duration_s, 10, "Seconds measured.");
DEFINE_double(dense_mb, 4, "Size of the dense tensor in MiB (mode dense or both).");
DEFINE_uint64(seed, 1, "Seed of the vocabulary and the draws.");

namespace eddy::bench {
namespace {

struct Workload {
  std::string mode;
  uint64_t vocab, keys_per_request;
  int dim;
  bool zipf;
  double zipf_s;
  int inflight;
  bool fused;
  double warmup_s, duration_s;
  uint64_t dense_elements;
  uint64_t seed;
};

// Pre-drawn requests: drawing ids is not what is measured.
std::vector<Buffer> DrawRequests(const Workload& w, int worker, size_t count) {
  std::mt19937_64 rng(w.seed * 1000003 + worker);
  std::vector<double> cdf;
  if (w.zipf) {
    cdf.resize(w.vocab);
    double sum = 0;
    for (uint64_t i = 0; i < w.vocab; ++i)
      cdf[i] = (sum += 1.0 / std::pow(double(i + 1), w.zipf_s));
    for (double& c : cdf) c /= sum;
  }
  std::uniform_int_distribution<uint64_t> uniform(0, w.vocab - 1);
  std::uniform_real_distribution<double> unit(0, 1);
  std::vector<Buffer> requests;
  for (size_t r = 0; r < count; ++r) {
    std::unordered_set<uint64_t> seen;
    seen.reserve(w.keys_per_request * 2);
    Buffer keys = Buffer::Allocate(w.keys_per_request * sizeof(uint64_t));
    auto out = keys.MutableAs<uint64_t>();
    size_t n = 0;
    while (n < w.keys_per_request) {
      uint64_t index =
          w.zipf ? std::lower_bound(cdf.begin(), cdf.end(), unit(rng)) - cdf.begin() : uniform(rng);
      if (index >= w.vocab) index = w.vocab - 1;
      if (!seen.insert(index).second) continue;
      out[n++] = MixKey(index ^ (w.seed << 40));  // the vocabulary: random-looking 64-bit ids
    }
    requests.push_back(std::move(keys));
  }
  return requests;
}

StatusOr<std::string> RunSparse(worker::Client& client, const Workload& w, WorkerReport* report) {
  const size_t pool = w.vocab / w.keys_per_request >= 64 ? 64 : 16;
  std::vector<Buffer> requests = DrawRequests(w, client.worker_id(), pool);
  Buffer grads = Buffer::Allocate(w.keys_per_request * w.dim * sizeof(float));
  {
    std::mt19937 rng(static_cast<uint32_t>(w.seed));
    std::normal_distribution<float> normal(0, 0.01f);
    for (float& g : grads.MutableAs<float>()) g = normal(rng);
  }
  const auto start = SteadyClock::now();
  const auto measure_from = start + std::chrono::duration_cast<SteadyClock::duration>(
                                        std::chrono::duration<double>(w.warmup_s));
  const auto end = measure_from + std::chrono::duration_cast<SteadyClock::duration>(
                                      std::chrono::duration<double>(w.duration_s));
  std::vector<std::vector<float>> latencies(w.inflight);
  std::vector<Status> status(w.inflight);
  {
    std::vector<std::jthread> lanes;
    for (int lane = 0; lane < w.inflight; ++lane) {
      lanes.emplace_back([&, lane] {
        size_t next = lane;
        while (true) {
          const auto t0 = SteadyClock::now();
          if (t0 >= end) return;
          const Buffer& keys = requests[next++ % requests.size()];
          Status s;
          if (w.fused) {
            s = client.PushPull("emb", keys, grads)->Wait();
          } else {
            s = client.Push("emb", keys, grads)->Wait();
            if (s.ok()) s = client.Pull("emb", keys)->Wait();
          }
          if (!s.ok()) {
            status[lane] = s;
            return;
          }
          const auto t1 = SteadyClock::now();
          if (t0 >= measure_from && t1 <= end) {
            latencies[lane].push_back(std::chrono::duration<float, std::micro>(t1 - t0).count());
          }
        }
      });
    }
  }
  for (const Status& s : status) RETURN_IF_ERROR(s);
  for (auto& l : latencies)
    report->sparse_latency_us.insert(report->sparse_latency_us.end(), l.begin(), l.end());
  report->sparse_seconds = w.duration_s;
  return std::string();
}

Status RunDense(worker::Client& client, const Workload& w, WorkerReport* report) {
  Buffer grads = Buffer::Allocate(w.dense_elements * sizeof(float));
  for (float& g : grads.MutableAs<float>()) g = 0.001f;
  const auto start = SteadyClock::now();
  const auto measure_from = start + std::chrono::duration_cast<SteadyClock::duration>(
                                        std::chrono::duration<double>(w.warmup_s));
  const auto end = measure_from + std::chrono::duration_cast<SteadyClock::duration>(
                                      std::chrono::duration<double>(w.duration_s));
  while (true) {
    const auto t0 = SteadyClock::now();
    if (t0 >= end) break;
    RETURN_IF_ERROR(client.PushDense("dense", grads)->Wait());
    auto pull = client.PullDense("dense");
    RETURN_IF_ERROR(pull->Wait());
    if (pull->values().size() != w.dense_elements)
      return InternalError("dense pull returned a wrong size");
    const auto t1 = SteadyClock::now();
    if (t0 >= measure_from && t1 <= end) {
      report->dense_latency_us.push_back(std::chrono::duration<float, std::micro>(t1 - t0).count());
    }
  }
  report->dense_seconds = w.duration_s;
  return OkStatus();
}

bool IsDefault(const char* flag) { return gflags::GetCommandLineFlagInfoOrDie(flag).is_default; }

}  // namespace
}  // namespace eddy::bench

int main(int argc, char** argv) {
  using namespace eddy;
  gflags::SetUsageMessage(
      "Measures sparse and dense push/pull throughput and latency of an Eddy cluster.\n"
      "  eddy_bench --preset=pslite                # local mode: every role as threads\n"
      "  mpirun -np 3 eddy_bench --preset=pslite   # scheduler, 1 server, 1 worker\n"
      "  eddy_bench --role=scheduler|server|worker --scheduler=tcp://host:port ...");
  eddy::job::ParseFlags(&argc, &argv);
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;

  if (!FLAGS_preset.empty() && FLAGS_preset != "pslite") {
    LOG(ERROR) << "unknown --preset '" << FLAGS_preset << "' (known: pslite)";
    return 1;
  }
  bench::Workload w;
  w.mode = FLAGS_mode;
  w.vocab = FLAGS_vocab;
  w.keys_per_request = FLAGS_keys_per_request;
  w.dim = FLAGS_dim;
  w.zipf = FLAGS_distribution == "zipf";
  w.zipf_s = FLAGS_zipf_s;
  w.inflight = FLAGS_inflight;
  w.fused = FLAGS_fused;
  w.warmup_s = FLAGS_warmup_s;
  w.duration_s = FLAGS_duration_s;
  w.seed = FLAGS_seed;
  w.dense_elements = static_cast<uint64_t>(FLAGS_dense_mb * (1 << 20) / sizeof(float));
  // The preset only fills in what was not given explicitly (its values are the flag defaults).
  if (w.mode != "sparse" && w.mode != "dense" && w.mode != "both") {
    LOG(ERROR) << "--mode must be sparse, dense or both, not '" << w.mode << "'";
    return 1;
  }
  if (FLAGS_distribution != "uniform" && FLAGS_distribution != "zipf") {
    LOG(ERROR) << "--distribution must be uniform or zipf";
    return 1;
  }
  if (w.keys_per_request == 0 || w.keys_per_request > w.vocab) {
    LOG(ERROR) << "--keys_per_request must be in [1, --vocab] (distinct ids per request)";
    return 1;
  }
  if (w.dim < 1 || w.inflight < 1 || w.duration_s <= 0 || w.warmup_s < 0 || w.dense_elements == 0) {
    LOG(ERROR) << "--dim, --inflight, --duration_s and --dense_mb must be positive, --warmup_s "
                  "non-negative";
    return 1;
  }
  if (!bench::IsDefault("tables")) {
    LOG(ERROR) << "eddy_bench defines its own tables from --dim, --optimizer and --dense_mb; do "
                  "not pass --tables";
    return 1;
  }
  std::string tables = "emb:dim=" + std::to_string(w.dim) + ",opt=" + FLAGS_optimizer +
                       ",init=normal,init_scale=0.01";
  if (w.mode != "sparse")
    tables += ";dense:shape=" + std::to_string(w.dense_elements) + ",opt=" + FLAGS_optimizer;
  gflags::SetCommandLineOption("tables", tables.c_str());

  StatusOr<job::JobOptions> options = job::JobOptionsFromFlags();
  if (!options.ok()) {
    LOG(ERROR) << options.status();
    return 1;
  }
  const int num_servers = options->scheduler_options.num_servers;
  job::WorkerProgram program;
  program.run = [w](worker::Client& client) -> StatusOr<std::string> {
    bench::WorkerReport report;
    if (w.mode != "dense") RETURN_IF_ERROR(bench::RunSparse(client, w, &report).status());
    if (w.mode != "sparse") RETURN_IF_ERROR(bench::RunDense(client, w, &report));
    return report.Serialize();
  };
  program.summarize = [w, num_servers](const std::vector<std::string>& reports) -> Status {
    bench::Summary summary;
    for (const std::string& r : reports) {
      ASSIGN_OR_RETURN(bench::WorkerReport report, bench::WorkerReport::Parse(r));
      summary.Add(report);
    }
    char zipf_buf[32];
    std::snprintf(zipf_buf, sizeof(zipf_buf), "(%.2f)", w.zipf_s);
    const std::string zipf_label = zipf_buf;
    char config[256];
    std::snprintf(config, sizeof(config),
                  "servers=%d workers=%zu keys/req=%llu dim=%d dist=%s%s inflight=%d opt=%s%s",
                  num_servers, reports.size(), static_cast<unsigned long long>(w.keys_per_request),
                  w.dim, w.zipf ? "zipf" : "uniform", w.zipf ? zipf_label.c_str() : "", w.inflight,
                  FLAGS_optimizer.c_str(), w.fused ? " fused" : "");
    std::printf("%s\n",
                summary.Line(config, w.keys_per_request, w.dim, w.dense_elements, w.fused).c_str());
    std::fflush(stdout);
    return OkStatus();
  };
  return job::RunJob(std::move(options).value(), program);
}
