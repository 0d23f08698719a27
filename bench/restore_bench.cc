// restore_bench: loading a model version into one server's store, the old way
// (model_store::Materialize, then a row-by-row copy into the tables:
// tests/testing/reference_restore.h) and the streaming ParameterStore::
// LoadVersion (with and without CRC32C checks), in the same run. One sparse
// table of --rows keys, --dim floats and Adam state (2 * dim + 1 floats), a
// full version plus a delta (--delta_fraction changed, --tombstone_fraction
// deleted), written by one server.
//
//   restore_bench                        # 10M rows x 16 dims, under /tmp
//   restore_bench --rows=1000000 --dir=/mnt/ssd/bench
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/partition.h"
#include "common/table_config.h"
#include "model_store/crc32c.h"
#include "model_store/version_dir.h"
#include "model_store/version_reader.h"
#include "model_store/version_writer.h"
#include "server/parameter_store.h"
#include "tests/testing/reference_restore.h"

DEFINE_uint64(rows, 10'000'000, "Keys of the sparse table.");
DEFINE_uint32(dim, 16, "Floats per key (Adam state: 2 * dim + 1 more).");
DEFINE_double(delta_fraction, 0.05, "Fraction of the rows the delta changes.");
DEFINE_double(tombstone_fraction, 0.001, "Fraction of the rows the delta deletes.");
DEFINE_int32(threads, 2, "Store threads (ParameterStoreOptions::num_threads).");
DEFINE_string(dir, "", "Where to write (a fresh subdirectory is made and removed); default /tmp.");
DEFINE_bool(old, true, "Also measure the old path (Materialize + row-by-row restore).");
DEFINE_uint64(seed, 1, "Seed of keys and values.");
DEFINE_string(reuse, "",
              "Model root to keep between runs (for profiling): written there if it has no "
              "version 2, else used as is; never removed.");

namespace eddy::bench {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using proto::Manifest;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

uint64_t Next(uint64_t* state) {
  *state += 0x9e3779b97f4a7c15ULL;
  return MixKey(*state - 0x9e3779b97f4a7c15ULL);
}

float Uniform(uint64_t* state, float lo, float hi) {
  return lo + (hi - lo) * static_cast<float>(Next(state) >> 40) * 0x1p-24f;
}

void Check(const Status& s, const std::string& what) {
  if (!s.ok()) {
    std::fprintf(stderr, "restore_bench: %s failed: %s\n", what.c_str(), s.ToString().c_str());
    std::exit(1);
  }
}

// Peak resident set since the last ResetPeakRss (VmHWM), in MB.
void ResetPeakRss() { std::ofstream("/proc/self/clear_refs") << "5"; }
double PeakRssMb() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

// User + system CPU time of this process so far.
double CpuSeconds() {
  struct rusage u;
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1e-6;
}

proto::TableConfig Table() {
  auto t = ParseTableSpecs("emb:dim=" + std::to_string(FLAGS_dim) + ",opt=adam,lr=0.01");
  Check(t.status(), "table spec");
  return t->front();
}

std::unique_ptr<server::ParameterStore> MakeStore() {
  server::ParameterStoreOptions o;
  o.num_threads = FLAGS_threads;
  auto store = std::make_unique<server::ParameterStore>(o);
  Check(store->AddTable(Table()), "add table");
  return store;
}

struct Result {
  std::string what;
  double seconds;
  uint64_t rows;
  double peak_mb;
  double cpu_seconds;  // user + system, all threads
};

int Main(const std::string& command) {
  const uint64_t n = FLAGS_rows;
  const uint32_t dim = FLAGS_dim, sf = 2 * dim + 1;
  std::string base = FLAGS_dir.empty() ? "/tmp" : FLAGS_dir;
  std::string tmpl = base + "/eddy_restore_bench_XXXXXX";
  if (!FLAGS_reuse.empty()) {
    fs::create_directories(FLAGS_reuse);
    tmpl = FLAGS_reuse;
  } else if (::mkdtemp(tmpl.data()) == nullptr) {
    std::fprintf(stderr, "restore_bench: cannot create a directory under %s\n", base.c_str());
    return 1;
  }
  const std::string root = tmpl;
  model_store::WriterOptions wo;
  wo.sync = true;  // as servers write; no writeback left running during the loads
  model_store::VersionInfo info;
  model_store::TableSchema schema;
  schema.set_name("emb");
  schema.set_dim(dim);
  schema.set_optimizer("adam");
  schema.set_state_floats_per_value(sf);
  info.tables = {schema};

  uint64_t changed = 0, deleted = 0;
  if (!FLAGS_reuse.empty() && fs::exists(root + "/" + model_store::VersionDirName(2))) {
    auto r = model_store::VersionReader::Open(root + "/" + model_store::VersionDirName(2));
    Check(r.status(), "open reused version");
    for (const auto& f : r->manifest().files()) {
      changed += f.rows();
      deleted += f.tombstones();
    }
  } else {
    const auto start = Clock::now();
    model_store::SparseShard full;
    full.table = "emb";
    full.dim = dim;
    full.state_floats = sf;
    full.keys.resize(n);
    for (uint64_t i = 0; i < n; ++i) full.keys[i] = MixKey(i ^ (FLAGS_seed << 40));
    uint64_t rng = FLAGS_seed;
    full.values.resize(n * dim);
    for (float& v : full.values) v = Uniform(&rng, -0.5f, 0.5f);
    full.state.resize(n * sf);
    for (float& v : full.state) v = Uniform(&rng, 0.0f, 2.0f);
    auto w = model_store::VersionWriter::Begin(root, 1, 0, false, Manifest::ENCODING_FLOAT32, wo);
    Check(w.status(), "begin full");
    Check(w->AddSparse(full), "write full");
    Check(w->Commit(info), "commit full");
    model_store::SparseShard delta;
    delta.table = "emb";
    delta.dim = dim;
    delta.state_floats = sf;
    for (uint64_t i = 0; i < n; ++i) {
      const double u = static_cast<double>(Next(&rng) >> 11) * 0x1p-53;
      if (u < FLAGS_delta_fraction) {
        delta.keys.push_back(full.keys[i]);
        for (uint32_t j = 0; j < dim; ++j)
          delta.values.push_back(full.values[i * dim + j] + Uniform(&rng, -0.01f, 0.01f));
        delta.state.insert(delta.state.end(), full.state.begin() + i * sf,
                           full.state.begin() + (i + 1) * sf);
      } else if (u < FLAGS_delta_fraction + FLAGS_tombstone_fraction) {
        delta.tombstones.push_back(full.keys[i]);
      }
    }
    changed = delta.keys.size();
    deleted = delta.tombstones.size();
    auto d = model_store::VersionWriter::Begin(root, 2, 1, false, Manifest::ENCODING_FLOAT32, wo);
    Check(d.status(), "begin delta");
    Check(d->AddSparse(delta), "write delta");
    Check(d->Commit(info), "commit delta");
    std::printf("wrote v1 (%llu rows) and delta v2 (%llu rows, %llu tombstones) in %.1f s\n",
                static_cast<unsigned long long>(n), static_cast<unsigned long long>(changed),
                static_cast<unsigned long long>(deleted), Seconds(start));
  }
  uint64_t bytes = 0;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_regular_file()) bytes += e.file_size();
  }

  const uint64_t read_rows = n + changed, expect = n - deleted;
  // Each path runs in a child process of its own: none inherits memory freed
  // by another (already mapped pages would hide the cost of faulting them in),
  // and each gets its own peak RSS.
  std::vector<Result> results;
  auto measure = [&](const std::string& what, const std::function<uint64_t()>& run) {
    int fds[2];
    if (::pipe(fds) != 0) std::exit(1);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(fds[0]);
      ResetPeakRss();
      const double cpu_start = CpuSeconds();
      const auto start = Clock::now();
      const uint64_t rows = run();
      const double out[3] = {Seconds(start), PeakRssMb(), CpuSeconds() - cpu_start};
      if (rows != expect) {
        std::fprintf(stderr, "restore_bench: %s loaded %llu rows, expected %llu\n", what.c_str(),
                     static_cast<unsigned long long>(rows),
                     static_cast<unsigned long long>(expect));
        ::_exit(1);
      }
      ::_exit(::write(fds[1], out, sizeof(out)) == sizeof(out) ? 0 : 1);
    }
    ::close(fds[1]);
    double got[3] = {0, 0, 0};
    const bool read_ok = ::read(fds[0], got, sizeof(got)) == sizeof(got);
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!read_ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "restore_bench: %s failed\n", what.c_str());
      std::exit(1);
    }
    results.push_back({what, got[0], read_rows, got[1], got[2]});
  };
  for (const bool verify : {true, false}) {
    measure(verify ? "new: LoadVersion, CRC32C checked" : "new: LoadVersion, no CRC32C check", [&] {
      auto* store = MakeStore().release();  // the child exits: no teardown timed
      auto loaded = store->LoadVersion(root, 2, server::LoadOptions{.verify_checksums = verify});
      Check(loaded.status(), "load");
      return loaded->rows;
    });
  }
  if (FLAGS_old) {
    measure("old: Materialize + row-by-row restore", [&] {
      auto* store = MakeStore().release();
      Check(testing::MaterializeAndRestore(root, 2, {Table()}, 0, 1, true, store),
            "materialize + restore");
      return static_cast<uint64_t>(store->sparse_table("emb")->size());
    });
  }

  // CPU time tells what the machine's other load took away: rows per CPU
  // second times the cores is what an idle machine would give at best.
  std::printf("\n%-40s %9s %12s %8s %16s %14s\n", "path", "time (s)", "rows/s (M)", "CPU (s)",
              "rows/CPU-s (M)", "peak RSS (MB)");
  for (const Result& r : results) {
    std::printf("%-40s %9.2f %12.2f %8.2f %16.2f %14.0f\n", r.what.c_str(), r.seconds,
                r.rows / 1e6 / r.seconds, r.cpu_seconds, r.rows / 1e6 / r.cpu_seconds, r.peak_mb);
  }
  std::printf(
      "\n%llu + %llu rows read (full + delta), %llu in the store; %u dims + %u Adam state "
      "floats; %.0f MB of files (page cache warm); %d store threads; CRC32C %s\n",
      static_cast<unsigned long long>(n), static_cast<unsigned long long>(changed),
      static_cast<unsigned long long>(expect), dim, sf, bytes / 1e6, FLAGS_threads,
      model_store::Crc32cIsHardware() ? "hardware (SSE4.2)" : "software");
  std::printf("command: %s\n", command.c_str());
  if (FLAGS_reuse.empty()) fs::remove_all(root);
  return 0;
}

}  // namespace
}  // namespace eddy::bench

int main(int argc, char** argv) {
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  gflags::SetUsageMessage("loading a model version into a server: restore_bench [--rows=N ...]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  return eddy::bench::Main(command);
}
