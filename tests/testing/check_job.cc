// eddy_check_job: a job whose workers hammer the servers with concurrent counting
// pushes and check the results. Every push adds exactly 1 to each of its keys
// (SGD, lr 1, gradient -1), so after all workers are done the stored value of a
// key must equal the number of acknowledged pushes that contained it, summed
// over workers. While pushing, workers pull and check that values never go down
// and never fall below what this worker already had acknowledged. The scheduler
// prints "check_job: OK ..." or fails the job with what went wrong.
// Used by the multi-process tests; runs under mpirun, with --role, or --local.
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <atomic>
#include <cstring>
#include <deque>
#include <random>

#include "common/partition.h"
#include "job/job_flags.h"

DEFINE_int32(check_keys, 2000, "Number of distinct keys.");
DEFINE_int32(check_pushes, 400, "Pushes per worker.");
DEFINE_int32(check_keys_per_push, 64, "Distinct keys per push.");
DEFINE_int32(check_inflight, 16, "Operations in flight per worker.");
DEFINE_int32(check_dense, 1000, "Elements of the dense counter tensor.");

namespace eddy {
namespace {

constexpr int kDim = 2;

uint64_t KeyOf(int i) { return MixKey(static_cast<uint64_t>(i) * 7919 + 13); }

struct Report {
  std::vector<uint32_t> acked;      // per key: acknowledged pushes of this worker containing it
  uint32_t dense_acked = 0;         // acknowledged dense pushes
  uint32_t violations = 0;          // monotonicity / read-your-writes violations seen
  std::vector<float> final_sparse;  // worker 0: final values (first column) per key
  std::vector<float> final_dense;   // worker 0: final dense tensor

  std::string Serialize() const {
    std::string out;
    auto put_vec = [&](const auto& v) {
      uint64_t n = v.size();
      out.append(reinterpret_cast<const char*>(&n), 8);
      if (n > 0) out.append(reinterpret_cast<const char*>(v.data()), n * sizeof(v[0]));
    };
    put_vec(acked);
    out.append(reinterpret_cast<const char*>(&dense_acked), 4);
    out.append(reinterpret_cast<const char*>(&violations), 4);
    put_vec(final_sparse);
    put_vec(final_dense);
    return out;
  }
  static StatusOr<Report> Parse(const std::string& in) {
    Report r;
    size_t pos = 0;
    auto get = [&](void* dst, size_t n) {
      if (in.size() - pos < n) return false;
      if (n > 0) std::memcpy(dst, in.data() + pos, n);
      pos += n;
      return true;
    };
    auto get_vec = [&](auto& v) {
      uint64_t n = 0;
      if (!get(&n, 8) || n > in.size()) return false;
      v.resize(n);
      return get(v.data(), n * sizeof(v[0]));
    };
    if (!get_vec(r.acked) || !get(&r.dense_acked, 4) || !get(&r.violations, 4) ||
        !get_vec(r.final_sparse) || !get_vec(r.final_dense)) {
      return InvalidArgumentError("malformed check report");
    }
    return r;
  }
};

StatusOr<std::string> RunWorker(worker::Client& client) {
  const int num_keys = FLAGS_check_keys;
  std::vector<std::atomic<uint32_t>> acked(num_keys);
  std::atomic<uint32_t> dense_acked{0};
  std::atomic<uint32_t> violations{0};
  std::mt19937_64 rng(1234 + client.worker_id());
  Buffer grads = Buffer::Allocate(FLAGS_check_keys_per_push * kDim * sizeof(float));
  for (float& g : grads.MutableAs<float>()) g = -1.0f;
  Buffer dense_grads = Buffer::Allocate(FLAGS_check_dense * sizeof(float));
  for (float& g : dense_grads.MutableAs<float>()) g = -1.0f;
  std::vector<float> last_seen(num_keys, 0.0f);

  struct InFlight {
    worker::OpPtr op;
    std::vector<int> key_index;   // pushes: keys it counts; pulls: keys it read
    std::vector<uint32_t> floor;  // pulls: acked counts when issued
    enum { kPush, kPull, kDense } kind;
  };
  std::deque<InFlight> window;
  auto retire = [&]() -> Status {
    InFlight f = std::move(window.front());
    window.pop_front();
    RETURN_IF_ERROR(f.op->Wait());
    if (f.kind == InFlight::kPush) {
      for (int k : f.key_index) acked[k].fetch_add(1);
    } else if (f.kind == InFlight::kDense) {
      dense_acked.fetch_add(1);
    } else {
      std::span<const float> v = f.op->values();
      for (size_t j = 0; j < f.key_index.size(); ++j) {
        const int k = f.key_index[j];
        const float value = v[j * kDim];
        if (value < last_seen[k] || value < static_cast<float>(f.floor[j]) ||
            v[j * kDim + 1] != value) {
          violations.fetch_add(1);
          LOG(ERROR) << "key " << k << ": pulled " << value << ", before saw " << last_seen[k]
                     << ", acknowledged pushes " << f.floor[j];
        }
        last_seen[k] = std::max(last_seen[k], value);
      }
    }
    return OkStatus();
  };
  std::uniform_int_distribution<int> pick(0, num_keys - 1);
  for (int p = 0; p < FLAGS_check_pushes; ++p) {
    InFlight push;
    push.kind = InFlight::kPush;
    std::vector<char> used(num_keys, 0);
    Buffer keys = Buffer::Allocate(FLAGS_check_keys_per_push * sizeof(uint64_t));
    auto out = keys.MutableAs<uint64_t>();
    for (int j = 0; j < FLAGS_check_keys_per_push; ++j) {
      int k;
      do k = pick(rng);
      while (used[k]);
      used[k] = 1;
      out[j] = KeyOf(k);
      push.key_index.push_back(k);
    }
    push.op = client.Push("counts", keys, grads);
    window.push_back(std::move(push));
    if (p % 8 == 0) {
      window.push_back(
          InFlight{client.PushDense("dense_counts", dense_grads), {}, {}, InFlight::kDense});
    }
    if (p % 4 == 0) {
      InFlight pull;
      pull.kind = InFlight::kPull;
      Buffer pk = Buffer::Allocate(32 * sizeof(uint64_t));
      for (int j = 0; j < 32; ++j) {
        int k = pick(rng);
        pk.MutableAs<uint64_t>()[j] = KeyOf(k);
        pull.key_index.push_back(k);
        pull.floor.push_back(acked[k].load());
      }
      pull.op = client.Pull("counts", pk);
      window.push_back(std::move(pull));
    }
    while (static_cast<int>(window.size()) > FLAGS_check_inflight) RETURN_IF_ERROR(retire());
  }
  while (!window.empty()) RETURN_IF_ERROR(retire());
  RETURN_IF_ERROR(client.Barrier("pushed"));

  Report report;
  for (auto& a : acked) report.acked.push_back(a.load());
  report.dense_acked = dense_acked.load();
  report.violations = violations.load();
  if (client.worker_id() == 0) {
    std::vector<uint64_t> all(num_keys);
    for (int k = 0; k < num_keys; ++k) all[k] = KeyOf(k);
    auto pull = client.Pull("counts", std::span<const uint64_t>(all));
    RETURN_IF_ERROR(pull->Wait());
    for (int k = 0; k < num_keys; ++k) report.final_sparse.push_back(pull->values()[k * kDim]);
    auto dense = client.PullDense("dense_counts");
    RETURN_IF_ERROR(dense->Wait());
    report.final_dense.assign(dense->values().begin(), dense->values().end());
  }
  return report.Serialize();
}

Status Summarize(const std::vector<std::string>& raw) {
  std::vector<Report> reports;
  for (const std::string& r : raw) {
    ASSIGN_OR_RETURN(Report rep, Report::Parse(r));
    reports.push_back(std::move(rep));
  }
  if (reports.empty() || reports[0].final_sparse.size() != static_cast<size_t>(FLAGS_check_keys)) {
    return InternalError("check_job: worker 0 sent no final values");
  }
  uint64_t pushes = 0, mismatches = 0, violations = 0, dense_total = 0;
  for (int k = 0; k < FLAGS_check_keys; ++k) {
    uint64_t expected = 0;
    for (const Report& r : reports) expected += r.acked[k];
    pushes += expected;
    if (reports[0].final_sparse[k] != static_cast<float>(expected)) {
      if (++mismatches <= 5) {
        LOG(ERROR) << "key " << k << ": stored " << reports[0].final_sparse[k]
                   << ", acknowledged pushes " << expected;
      }
    }
  }
  for (const Report& r : reports) {
    violations += r.violations;
    dense_total += r.dense_acked;
  }
  for (float v : reports[0].final_dense) {
    if (v != static_cast<float>(dense_total)) ++mismatches;
  }
  std::string line = "check_job: " + std::to_string(pushes) + " key increments acknowledged over " +
                     std::to_string(FLAGS_check_keys) + " keys, " + std::to_string(dense_total) +
                     " dense pushes, " + std::to_string(mismatches) + " mismatches, " +
                     std::to_string(violations) + " monotonicity violations";
  if (mismatches != 0 || violations != 0) return DataLossError(line);
  std::printf("%s: OK\n", line.c_str());
  std::fflush(stdout);
  return OkStatus();
}

}  // namespace
}  // namespace eddy

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "Checks exactly-once application of acknowledged pushes on a real cluster.");
  eddy::job::ParseFlags(&argc, &argv);
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  std::string tables =
      "counts:dim=2,opt=sgd,lr=1;dense_counts:shape=" + std::to_string(FLAGS_check_dense) +
      ",opt=sgd,lr=1";
  gflags::SetCommandLineOption("tables", tables.c_str());
  auto options = eddy::job::JobOptionsFromFlags();
  if (!options.ok()) {
    LOG(ERROR) << options.status();
    return 1;
  }
  eddy::job::WorkerProgram program;
  program.run = eddy::RunWorker;
  program.summarize = eddy::Summarize;
  return eddy::job::RunJob(std::move(options).value(), program);
}
