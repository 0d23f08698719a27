// serve_follow_bench: freshness and memory of a serving replica following a
// model that changes every second. Writes a full version of --rows sparse rows
// (LR-like: 1 float a row, libffm attributes) into a temporary root with
// model_store's writer, starts an in-process Replica on it (model_dir mode),
// then commits a delta of --delta_fraction of the rows every --interval_ms for
// --seconds: mostly updates, plus --churn of them erased and as many new keys
// (the key count stays flat). Reports per delta the commit -> served latency
// and the process RSS (/proc/self/status VmRSS), then p50/p99 and RSS against
// the serving payload (keys + values).
//   build/bin/serve_follow_bench --rows=10000000 --seconds=90
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "model_store/version_writer.h"
#include "models/ctr_model.h"
#include "serving/replica.h"

DEFINE_uint64(rows, 10000000, "Sparse rows in the model.");
DEFINE_double(delta_fraction, 0.01, "Rows a delta changes, as a fraction of --rows.");
DEFINE_double(churn, 0.05, "Of a delta's rows: this fraction erased and as many new keys.");
DEFINE_int32(seconds, 60, "How long deltas are committed.");
DEFINE_int32(interval_ms, 1000, "A delta every this often.");
DEFINE_int32(shards, 8, "Files per version (as servers would write them).");
DEFINE_int32(scan_interval_ms, 20, "The replica's rescan period of the root.");
DEFINE_uint64(seed, 1, "Seed of values and updated rows.");

namespace eddy {
namespace {

namespace fs = std::filesystem;
constexpr int kFields = 39;

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

// The key of row index i (keys are sparse 64-bit ids, as feature hashes are).
uint64_t KeyOf(uint64_t i) {
  uint64_t x = i + 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return (x ^ (x >> 31)) & ((uint64_t{1} << 62) - 1);
}

double RssMb() {
  std::ifstream in("/proc/self/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atof(line.c_str() + 6) / 1024.0;
  }
  return 0;
}

models::ModelOptions Options() {
  models::ModelOptions o;
  o.kind = models::ModelKind::kLr;
  o.num_fields = kFields;
  o.emb_dim = 0;
  o.dense_dim = 0;
  return o;
}

// Commits version `v` (full if parent == 0): rows with index in `updates` get
// fresh values, `erase` are tombstoned.
Status WriteVersion(const std::string& root, uint64_t v, uint64_t parent,
                    const std::vector<uint64_t>& updates, const std::vector<uint64_t>& erase,
                    std::mt19937& rng) {
  std::normal_distribution<float> normal(0.0f, 0.05f);
  ASSIGN_OR_RETURN(model_store::VersionWriter w,
                   model_store::VersionWriter::Begin(
                       root, v, parent, true, proto::Manifest::ENCODING_FLOAT32, {.sync = false}));
  const size_t shards = static_cast<size_t>(std::max(1, FLAGS_shards));
  for (size_t s = 0; s < shards; ++s) {
    model_store::SparseShard shard;
    shard.table = "emb";
    shard.shard = static_cast<uint32_t>(s);
    shard.dim = 1;
    const size_t lo = updates.size() * s / shards, hi = updates.size() * (s + 1) / shards;
    shard.keys.reserve(hi - lo);
    for (size_t i = lo; i < hi; ++i) shard.keys.push_back(KeyOf(updates[i]));
    shard.values.resize(shard.keys.size());
    for (float& x : shard.values) x = normal(rng);
    const size_t elo = erase.size() * s / shards, ehi = erase.size() * (s + 1) / shards;
    for (size_t i = elo; i < ehi; ++i) shard.tombstones.push_back(KeyOf(erase[i]));
    RETURN_IF_ERROR(w.AddSparse(shard));
  }
  model_store::VersionInfo info;
  model_store::TableSchema t;
  t.set_name("emb");
  t.set_dim(1);
  info.tables.push_back(t);
  ASSIGN_OR_RETURN(std::unique_ptr<models::CtrModel> ctr, models::CtrModel::Create(Options()));
  for (const auto& p : ctr->dense_params()) {
    model_store::TableSchema d;
    d.set_name(p.name);
    d.set_dense(true);
    for (int64_t x : p.shape) d.add_shape(static_cast<uint64_t>(x));
    info.tables.push_back(d);
    model_store::DenseSlice slice;
    slice.table = p.name;
    slice.values.resize(static_cast<size_t>(p.size()));
    for (float& x : slice.values) x = normal(rng);
    RETURN_IF_ERROR(w.AddDense(slice));
  }
  info.attributes = {{"model", "lr"},       {"emb_dim", "0"},  {"hidden", ""},
                     {"num_fields", std::to_string(kFields)}, {"dense_dim", "0"},
                     {"format", "libffm"},  {"sparse_table", "emb"}};
  return w.Commit(info);
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

int Main(const std::string& command) {
  std::printf("# %s\n", command.c_str());
  std::string tmpl = (fs::temp_directory_path() / "eddy_serve_follow_XXXXXX").string();
  CHECK(::mkdtemp(tmpl.data()) != nullptr);
  const std::string root = tmpl;
  std::mt19937 rng(static_cast<uint32_t>(FLAGS_seed));
  const uint64_t rows = FLAGS_rows;
  // Alive rows are the indices [lo, hi): a delta erases the oldest, adds new ones.
  uint64_t lo = 0, hi = rows;
  const double rss_start = RssMb();
  auto t0 = SteadyClock::now();
  {
    std::vector<uint64_t> all(rows);
    for (uint64_t i = 0; i < rows; ++i) all[i] = i;
    Status s = WriteVersion(root, 1, 0, all, {}, rng);
    if (!s.ok()) {
      std::fprintf(stderr, "writing the full version: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  std::printf("# full version: %llu rows written in %.2f s; RSS before the replica %.0f MB\n",
              static_cast<unsigned long long>(rows), Seconds(SteadyClock::now() - t0), RssMb());

  zmq::context_t context;
  serving::ReplicaOptions o;
  o.model_dir = root;
  o.scan_interval = std::chrono::milliseconds(FLAGS_scan_interval_ms);
  serving::Replica replica(context, o);
  CHECK(replica.Bind().ok());
  std::jthread serve([&] { CHECK(replica.Run().ok()); });
  t0 = SteadyClock::now();
  CHECK(replica.WaitFor([](const proto::ServeStatus& s) { return s.current_version() >= 1; },
                        std::chrono::minutes(10)));
  const double load_s = Seconds(SteadyClock::now() - t0);
  const double payload_mb = static_cast<double>(rows) * (8 + 4) / (1 << 20);
  std::printf("# full version served %.2f s after start; payload (keys + values) %.0f MB\n",
              load_s, payload_mb);

  const uint64_t per_delta = static_cast<uint64_t>(FLAGS_delta_fraction * static_cast<double>(rows));
  const uint64_t churn = static_cast<uint64_t>(FLAGS_churn * static_cast<double>(per_delta));
  std::printf("# deltas: %llu rows each (%llu of them new keys, %llu erased) every %d ms\n",
              static_cast<unsigned long long>(per_delta), static_cast<unsigned long long>(churn),
              static_cast<unsigned long long>(churn), FLAGS_interval_ms);
  std::printf("%-8s %-10s %-12s %-12s %-10s\n", "version", "t_s", "fresh_ms", "rss_mb",
              "model_mb");
  std::vector<double> fresh, rss_tail;
  const auto begin = SteadyClock::now();
  const uint64_t last = static_cast<uint64_t>(FLAGS_seconds) * 1000 /
                        static_cast<uint64_t>(std::max(1, FLAGS_interval_ms)) + 1;
  double rss_max = 0;
  for (uint64_t v = 2; v <= last; ++v) {
    std::this_thread::sleep_until(begin + std::chrono::milliseconds(FLAGS_interval_ms) * (v - 1));
    std::vector<uint64_t> updates, erase;
    std::uniform_int_distribution<uint64_t> pick(lo + churn, hi - 1);
    for (uint64_t i = 0; i + churn < per_delta; ++i) updates.push_back(pick(rng));
    std::sort(updates.begin(), updates.end());
    updates.erase(std::unique(updates.begin(), updates.end()), updates.end());
    for (uint64_t i = 0; i < churn; ++i) {
      erase.push_back(lo++);
      updates.push_back(hi++);
    }
    Status s = WriteVersion(root, v, v - 1, updates, erase, rng);
    const auto committed = SteadyClock::now();
    if (!s.ok()) {
      std::fprintf(stderr, "writing version %llu: %s\n", static_cast<unsigned long long>(v),
                   s.ToString().c_str());
      return 1;
    }
    // WaitFor wakes on the replica's change: the served time.
    if (!replica.WaitFor([&](const proto::ServeStatus& st) { return st.current_version() >= v; },
                         std::chrono::seconds(30))) {
      std::fprintf(stderr, "version %llu not served within 30 s\n",
                   static_cast<unsigned long long>(v));
      return 1;
    }
    const double ms = 1000 * Seconds(SteadyClock::now() - committed);
    fresh.push_back(ms);
    const double rss = RssMb();
    rss_max = std::max(rss_max, rss);
    if (v > last * 2 / 3) rss_tail.push_back(rss);
    std::printf("%-8llu %-10.1f %-12.1f %-12.0f %-10.0f\n", static_cast<unsigned long long>(v),
                Seconds(committed - begin), ms, rss,
                static_cast<double>(replica.model_memory_bytes()) / (1 << 20));
    std::fflush(stdout);
  }
  const double tail_min = rss_tail.empty() ? 0 : *std::min_element(rss_tail.begin(), rss_tail.end());
  const double tail_max = rss_tail.empty() ? 0 : *std::max_element(rss_tail.begin(), rss_tail.end());
  std::printf("# freshness (commit -> served) over %zu deltas: p50 %.0f ms, p99 %.0f ms, max %.0f ms\n",
              fresh.size(), Percentile(fresh, 0.5), Percentile(fresh, 0.99),
              fresh.empty() ? 0 : *std::max_element(fresh.begin(), fresh.end()));
  std::printf("# RSS: %.0f MB at start, max %.0f MB, last third %.0f..%.0f MB; payload %.0f MB; "
              "bar 2 x payload + 100 = %.0f MB; replica model memory %.0f MB (%.2fx payload)\n",
              rss_start, rss_max, tail_min, tail_max, payload_mb, 2 * payload_mb + 100,
              static_cast<double>(replica.model_memory_bytes()) / (1 << 20),
              static_cast<double>(replica.model_memory_bytes()) / (1 << 20) / payload_mb);
  replica.Stop();
  serve.join();
  fs::remove_all(root);
  return 0;
}

}  // namespace
}  // namespace eddy

int main(int argc, char** argv) {
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  FLAGS_minloglevel = 1;  // the replica logs every version at INFO
  return eddy::Main(command);
}
