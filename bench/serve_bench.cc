// serve_bench: one serving replica fed by a VersionService over loopback.
// Measures catch-up from zero (fetch + verify + materialize a full version of
// --rows sparse rows), single-row PREDICT latency (p50/p99) and batch PREDICT
// throughput (rows/s) for a Criteo-format model.
//   build/bin/serve_bench --rows=1000000 --emb_dim=16 --hidden=400,400,400
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>
#include <thread>

#include "bench/bench_report.h"
#include "model_store/version_dir.h"
#include "model_store/version_writer.h"
#include "model_store/version_service.h"
#include "serving/replica.h"
#include "serving/serve_client.h"
#include "worker/data/parser.h"
#include "worker/data/row.h"

DEFINE_uint64(rows, 1000000, "Sparse rows (feature ids) in the full version.");
DEFINE_string(model, "deepfm", "Model: lr, fm, wdl or deepfm.");
DEFINE_int32(emb_dim, 16, "Embedding dimension (rows hold 1 + emb_dim floats).");
DEFINE_string(hidden, "400,400,400", "MLP layer sizes.");
DEFINE_int32(single_requests, 2000, "Single-row PREDICT requests timed.");
DEFINE_int32(batch_requests, 200, "Batch PREDICT requests timed.");
DEFINE_int32(batch_rows, 256, "Rows per batch request.");
DEFINE_uint64(chunk_bytes, 1 << 20, "VERSION_FETCH chunk size.");
DEFINE_uint64(seed, 1, "Seed of values and rows.");

namespace eddy {
namespace {

namespace fs = std::filesystem;
constexpr int kInts = worker::kCriteoIntegerFeatures;
constexpr int kCats = worker::kCriteoCategoricalFeatures;

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

std::map<std::string, std::string> Attributes() {
  return {{"model", FLAGS_model},
          {"emb_dim", std::to_string(FLAGS_emb_dim)},
          {"hidden", FLAGS_hidden},
          {"num_fields", std::to_string(kInts + kCats)},
          {"dense_dim", std::to_string(kInts)},
          {"format", "criteo"},
          {"sparse_table", "emb"}};
}

// Values per categorical field: the version holds every one of them.
uint64_t Vocab() { return std::max<uint64_t>(1, FLAGS_rows / kCats); }

Status WriteFullVersion(const std::string& root, const models::ModelOptions& options) {
  std::mt19937 rng(static_cast<uint32_t>(FLAGS_seed));
  std::normal_distribution<float> normal(0.0f, 0.05f);
  const uint32_t dim = 1 + static_cast<uint32_t>(options.emb_dim);
  ASSIGN_OR_RETURN(model_store::VersionWriter w,
                   model_store::VersionWriter::Begin(
                       root, 1, 0, true, proto::Manifest::ENCODING_FLOAT32, {.sync = false}));
  model_store::SparseShard s;
  s.table = "emb";
  s.dim = dim;
  for (int f = 0; f < kInts; ++f)
    for (uint64_t b = 0; b < 40; ++b) s.keys.push_back(worker::FeatureId(f, b));
  for (int c = 0; c < kCats; ++c)
    for (uint64_t v = 0; v < Vocab(); ++v) s.keys.push_back(worker::FeatureId(kInts + c, v));
  s.values.resize(s.keys.size() * dim);
  for (float& x : s.values) x = normal(rng);
  RETURN_IF_ERROR(w.AddSparse(s));
  model_store::VersionInfo info;
  model_store::TableSchema t;
  t.set_name("emb");
  t.set_dim(dim);
  info.tables.push_back(t);
  ASSIGN_OR_RETURN(std::unique_ptr<models::CtrModel> ctr, models::CtrModel::Create(options));
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
  info.attributes = Attributes();
  return w.Commit(info);
}

std::string CriteoRow(std::mt19937_64& rng) {
  std::string line = "0";
  char buf[24];
  for (int i = 0; i < kInts; ++i) line += "\t" + std::to_string(rng() % 1000);
  for (int c = 0; c < kCats; ++c) {
    std::snprintf(buf, sizeof(buf), "%08llx", static_cast<unsigned long long>(rng() % Vocab()));
    line += "\t";
    line += buf;
  }
  return line;
}

int Main(const std::string& command) {
  models::ModelOptions options;
  auto kind = models::ParseModelKind(FLAGS_model);
  if (!kind.ok()) {
    std::fprintf(stderr, "%s\n", kind.status().ToString().c_str());
    return 2;
  }
  options.kind = *kind;
  options.num_fields = kInts + kCats;
  options.dense_dim = kInts;
  options.emb_dim = options.kind == models::ModelKind::kLr ? 0 : FLAGS_emb_dim;
  options.hidden.clear();
  std::stringstream in(FLAGS_hidden);
  for (std::string part; std::getline(in, part, ',');) options.hidden.push_back(std::stoi(part));

  std::printf("# %s\n", command.c_str());
  std::printf("# model %s, %d fields, emb_dim %d, hidden %s, %llu sparse rows, %u hw threads\n",
              FLAGS_model.c_str(), options.num_fields, options.emb_dim, FLAGS_hidden.c_str(),
              static_cast<unsigned long long>(FLAGS_rows), std::thread::hardware_concurrency());
  std::string tmpl = (fs::temp_directory_path() / "eddy_serve_bench_XXXXXX").string();
  CHECK(::mkdtemp(tmpl.data()) != nullptr);
  const std::string root = tmpl + "/root", cache = tmpl + "/cache";
  fs::create_directories(root);
  fs::create_directories(cache);

  auto t0 = SteadyClock::now();
  Status s = WriteFullVersion(root, options);
  if (!s.ok()) {
    std::fprintf(stderr, "writing the version: %s\n", s.ToString().c_str());
    return 1;
  }
  uint64_t bytes = 0;
  for (const auto& e : fs::directory_iterator(root + "/" + model_store::VersionDirName(1)))
    bytes += e.file_size();
  std::printf("%-34s %10.3f s  (%.1f MB on disk)\n", "write full version",
              Seconds(SteadyClock::now() - t0), static_cast<double>(bytes) / 1e6);

  zmq::context_t context;
  model_store::VersionServiceOptions so;
  so.root = root;
  so.chunk_bytes = FLAGS_chunk_bytes;
  model_store::VersionService service(context, so);
  auto service_endpoint = service.Bind();
  CHECK(service_endpoint.ok()) << service_endpoint.status();
  std::jthread service_thread([&] { CHECK(service.Run().ok()); });

  serving::ReplicaOptions ro;
  ro.version_endpoint = *service_endpoint;
  ro.cache_dir = cache;
  ro.fetch_chunk_bytes = FLAGS_chunk_bytes;
  serving::Replica replica(context, ro);
  auto endpoint = replica.Bind();
  CHECK(endpoint.ok()) << endpoint.status();
  t0 = SteadyClock::now();
  std::jthread replica_thread([&] { CHECK(replica.Run().ok()); });
  const bool loaded =
      replica.WaitFor([](const proto::ServeStatus& st) { return st.current_version() == 1; },
                      std::chrono::minutes(10));
  CHECK(loaded) << replica.status().DebugString();
  std::printf("%-34s %10.3f s  (loader: fetch+verify+materialize %.3f s)\n", "catch-up from zero",
              Seconds(SteadyClock::now() - t0), replica.status().last_load_seconds());

  serving::ServeClient client(context, std::chrono::seconds(60));
  CHECK(client.Connect(*endpoint).ok());
  std::mt19937_64 rng(FLAGS_seed);
  std::vector<std::string> one(1);
  for (int i = 0; i < 50; ++i) {  // warm-up (primitive creation for batch 1)
    one[0] = CriteoRow(rng);
    CHECK(client.Predict(one).ok());
  }
  std::vector<float> latency_us;
  for (int i = 0; i < FLAGS_single_requests; ++i) {
    one[0] = CriteoRow(rng);
    auto start = SteadyClock::now();
    auto p = client.Predict(one);
    latency_us.push_back(static_cast<float>(Seconds(SteadyClock::now() - start) * 1e6));
    CHECK(p.ok()) << p.status();
  }
  std::printf("%-34s p50 %8.1f us  p99 %8.1f us  (%d requests)\n", "single-row PREDICT latency",
              bench::Percentile(latency_us, 0.5), bench::Percentile(latency_us, 0.99),
              FLAGS_single_requests);

  std::vector<std::string> batch(static_cast<size_t>(FLAGS_batch_rows));
  for (auto& r : batch) r = CriteoRow(rng);
  CHECK(client.Predict(batch).ok());  // warm-up
  std::vector<float> batch_us;
  t0 = SteadyClock::now();
  for (int i = 0; i < FLAGS_batch_requests; ++i) {
    auto start = SteadyClock::now();
    auto p = client.Predict(batch);
    batch_us.push_back(static_cast<float>(Seconds(SteadyClock::now() - start) * 1e6));
    CHECK(p.ok()) << p.status();
  }
  const double secs = Seconds(SteadyClock::now() - t0);
  std::printf("%-34s %10.0f rows/s  (p50 %.2f ms per request, %d x %d rows)\n",
              "batch PREDICT throughput",
              static_cast<double>(FLAGS_batch_requests) * FLAGS_batch_rows / secs,
              bench::Percentile(batch_us, 0.5) / 1e3, FLAGS_batch_requests, FLAGS_batch_rows);

  replica.Stop();
  service.Stop();
  replica_thread.join();
  service_thread.join();
  std::error_code ec;
  fs::remove_all(tmpl, ec);
  return 0;
}

}  // namespace
}  // namespace eddy

int main(int argc, char** argv) {
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  gflags::SetUsageMessage("serving replica benchmark: catch-up, latency, throughput");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  return eddy::Main(command);
}
