// model_format_bench: time and size of the on-disk model format at scale. One
// sparse table (--rows keys of --dim floats, AdaGrad-like state of
// --state_floats floats) split over --shards shards written in parallel:
// a full training version, a delta (--delta_fraction of the rows changed,
// --tombstone_fraction deleted), read + verify + materialize of the chain, and
// serving exports (float32, fp16, int8; full, and an fp16 delta).
//
//   model_format_bench                       # 10M rows x 16 dims, temp dir under /tmp
//   model_format_bench --rows=1000000 --dir=/mnt/ssd/bench
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/partition.h"
#include "model_store/chain.h"
#include "model_store/materialize.h"
#include "model_store/serving_export.h"
#include "model_store/version_dir.h"
#include "model_store/version_writer.h"

DEFINE_uint64(rows, 10'000'000, "Keys of the sparse table.");
DEFINE_uint32(dim, 16, "Floats per key.");
DEFINE_uint32(state_floats, 16, "Optimizer state floats per key (0: none).");
DEFINE_uint32(shards, 2, "Server shards the table is split over (written in parallel).");
DEFINE_double(delta_fraction, 0.05, "Fraction of the rows a delta changes.");
DEFINE_double(tombstone_fraction, 0.001, "Fraction of the rows a delta deletes.");
DEFINE_string(dir, "", "Where to write (a fresh subdirectory is made and removed); default /tmp.");
DEFINE_bool(sync, true, "fsync files and directories, as production writers do.");
DEFINE_bool(keep, false, "Keep the written versions (print where) instead of removing them.");
DEFINE_uint64(seed, 1, "Seed of keys and values.");

namespace eddy::bench {
namespace {

namespace fs = std::filesystem;
using proto::Manifest;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// SplitMix64 step: a fast stream of well-mixed 64-bit values.
uint64_t Next(uint64_t* state) {
  *state += 0x9e3779b97f4a7c15ULL;
  return MixKey(*state - 0x9e3779b97f4a7c15ULL);
}

float Uniform(uint64_t* state, float lo, float hi) {
  return lo + (hi - lo) * static_cast<float>(Next(state) >> 40) * 0x1p-24f;
}

// Runs fn(shard) for every shard on its own thread.
void PerShard(uint32_t shards, const std::function<void(uint32_t)>& fn) {
  std::vector<std::jthread> threads;
  for (uint32_t s = 0; s < shards; ++s) threads.emplace_back(fn, s);
}

uint64_t VersionBytes(const std::string& root, uint64_t version) {
  uint64_t bytes = 0;
  for (const auto& e : fs::directory_iterator(root + "/" + model_store::VersionDirName(version))) {
    bytes += e.file_size();
  }
  return bytes;
}

struct Row {
  std::string what;
  double seconds;
  uint64_t bytes;  // 0: not applicable
  uint64_t rows;   // rows processed
};

void Check(const Status& s, const std::string& what) {
  if (!s.ok()) {
    std::fprintf(stderr, "model_format_bench: %s failed: %s\n", what.c_str(), s.ToString().c_str());
    std::exit(1);
  }
}

int Main(const std::string& command) {
  const uint64_t n = FLAGS_rows;
  const uint32_t dim = FLAGS_dim, sf = FLAGS_state_floats, shards = FLAGS_shards;
  if (n == 0 || dim == 0 || shards == 0 || FLAGS_delta_fraction < 0 || FLAGS_delta_fraction > 1 ||
      FLAGS_tombstone_fraction < 0 || FLAGS_delta_fraction + FLAGS_tombstone_fraction > 1) {
    std::fprintf(stderr,
                 "model_format_bench: bad flags (rows, dim, shards > 0; fractions in "
                 "[0, 1] summing to at most 1)\n");
    return 2;
  }
  std::string base = FLAGS_dir.empty() ? "/tmp" : FLAGS_dir;
  fs::create_directories(base);
  std::string tmpl = base + "/eddy_model_format_bench_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) {
    std::fprintf(stderr, "model_format_bench: cannot create a directory under %s\n", base.c_str());
    return 1;
  }
  const std::string dir = tmpl, train = dir + "/train";
  model_store::WriterOptions wo;
  wo.sync = FLAGS_sync;
  std::vector<Row> rows;
  model_store::TableSchema schema;
  schema.set_name("emb");
  schema.set_dim(dim);
  schema.set_optimizer("adagrad");
  schema.set_state_floats_per_value(sf);
  model_store::VersionInfo info;
  info.tables = {schema};
  info.metrics["auc"] = 0.8;

  // Data: keys MixKey(i) (distinct: MixKey is a bijection), placed as servers do.
  std::vector<model_store::SparseShard> data(shards);
  {
    const auto start = Clock::now();
    PerShard(shards, [&](uint32_t s) {
      model_store::SparseShard& d = data[s];
      d.table = "emb";
      d.shard = s;
      d.dim = dim;
      d.state_floats = sf;
      d.keys.reserve(n / shards + n / 100);
      for (uint64_t i = 0; i < n; ++i) {
        const uint64_t key = MixKey(i ^ (FLAGS_seed << 40));
        if (ServerOfKey(key, shards) == s) d.keys.push_back(key);
      }
      uint64_t rng = FLAGS_seed * 1000 + s;
      d.values.resize(d.keys.size() * dim);
      for (float& v : d.values) v = Uniform(&rng, -0.5f, 0.5f);
      d.state.resize(d.keys.size() * sf);
      for (float& v : d.state) v = Uniform(&rng, 0.0f, 2.0f);
    });
    std::printf("generated %llu rows over %u shards in %.1f s\n",
                static_cast<unsigned long long>(n), shards, Seconds(start));
  }

  // Full training version.
  {
    const auto start = Clock::now();
    auto w = model_store::VersionWriter::Begin(train, 1, 0, /*serving=*/false,
                                               Manifest::ENCODING_FLOAT32, wo);
    Check(w.status(), "begin full");
    std::vector<Status> st(shards);
    PerShard(shards, [&](uint32_t s) { st[s] = w->AddSparse(data[s]); });
    for (const Status& s : st) Check(s, "write full");
    Check(w->Commit(info), "commit full");
    rows.push_back({"write full (train: f32 + state)", Seconds(start), VersionBytes(train, 1), n});
  }

  // Delta: every k-th row of each shard changes, a few others are deleted.
  uint64_t changed = 0, deleted = 0;
  {
    std::vector<model_store::SparseShard> delta(shards);
    PerShard(shards, [&](uint32_t s) {
      const model_store::SparseShard& d = data[s];
      model_store::SparseShard& out = delta[s];
      out.table = "emb";
      out.shard = s;
      out.dim = dim;
      out.state_floats = sf;
      uint64_t rng = FLAGS_seed * 7777 + s;
      const double p_change = FLAGS_delta_fraction, p_delete = FLAGS_tombstone_fraction;
      for (size_t i = 0; i < d.keys.size(); ++i) {
        const double u = static_cast<double>(Next(&rng) >> 11) * 0x1p-53;
        if (u < p_change) {
          out.keys.push_back(d.keys[i]);
          for (uint32_t j = 0; j < dim; ++j) {
            out.values.push_back(d.values[i * dim + j] + Uniform(&rng, -0.01f, 0.01f));
          }
          out.state.insert(out.state.end(), d.state.begin() + i * sf,
                           d.state.begin() + (i + 1) * sf);
        } else if (u < p_change + p_delete) {
          out.tombstones.push_back(d.keys[i]);
        }
      }
    });
    data.clear();
    data.shrink_to_fit();
    for (const model_store::SparseShard& d : delta) {
      changed += d.keys.size();
      deleted += d.tombstones.size();
    }
    const auto start = Clock::now();
    auto w = model_store::VersionWriter::Begin(train, 2, 1, /*serving=*/false,
                                               Manifest::ENCODING_FLOAT32, wo);
    Check(w.status(), "begin delta");
    std::vector<Status> st(shards);
    PerShard(shards, [&](uint32_t s) { st[s] = w->AddSparse(delta[s]); });
    for (const Status& s : st) Check(s, "write delta");
    Check(w->Commit(info), "commit delta");
    rows.push_back({"write delta (" + std::to_string(changed) + " rows, " +
                        std::to_string(deleted) + " tombstones)",
                    Seconds(start), VersionBytes(train, 2), changed + deleted});
  }

  // Read: verify every checksum of the chain, then decode and apply it.
  {
    auto start = Clock::now();
    auto chain = model_store::ResolveChain(train, 2);
    Check(chain.status(), "resolve");
    uint64_t bytes = 0;
    for (uint64_t v : *chain) {
      auto r = model_store::VersionReader::Open(train + "/" + model_store::VersionDirName(v));
      Check(r.status(), "open");
      Check(r->Verify(), "verify");
      bytes += VersionBytes(train, v);
    }
    rows.push_back({"verify chain (CRC32C of every file)", Seconds(start), bytes, n + changed});
    start = Clock::now();
    auto model = model_store::Materialize(train, 2);
    Check(model.status(), "materialize");
    const double secs = Seconds(start);
    const uint64_t got = model->sparse.at("emb").size();
    if (got != n - deleted) {
      std::fprintf(stderr, "model_format_bench: materialized %llu rows, expected %llu\n",
                   static_cast<unsigned long long>(got),
                   static_cast<unsigned long long>(n - deleted));
      return 1;
    }
    rows.push_back({"materialize chain (decode + CRC + apply)", secs, bytes, n + changed});
  }

  // Serving exports of version 2 (full: materialized shard by shard).
  for (const auto& [name, encoding] :
       {std::pair{"f32", Manifest::ENCODING_FLOAT32}, std::pair{"fp16", Manifest::ENCODING_FLOAT16},
        std::pair{"int8", Manifest::ENCODING_INT8_ROW_SCALE}}) {
    const std::string dst = dir + "/serve_" + name;
    model_store::ExportOptions eo;
    eo.writer = wo;
    eo.threads = static_cast<int>(shards);
    const auto start = Clock::now();
    Check(model_store::ExportForServing(train, 2, dst, encoding, eo),
          std::string("export ") + name);
    rows.push_back({std::string("export full serving ") + name, Seconds(start),
                    VersionBytes(dst, 2), n - deleted});
  }
  // A serving delta straight from the training delta's files, on the exported
  // full version 1.
  {
    const std::string dst = dir + "/serve_fp16_delta";
    model_store::ExportOptions eo;
    eo.writer = wo;
    eo.threads = static_cast<int>(shards);
    Check(model_store::ExportForServing(train, 1, dst, Manifest::ENCODING_FLOAT16, eo),
          "export v1");
    eo.delta = true;
    const auto start = Clock::now();
    Check(model_store::ExportForServing(train, 2, dst, Manifest::ENCODING_FLOAT16, eo),
          "export delta");
    rows.push_back(
        {"export delta serving fp16", Seconds(start), VersionBytes(dst, 2), changed + deleted});
  }

  std::printf("\n%-46s %9s %11s %10s %12s\n", "step", "time (s)", "bytes (MB)", "MB/s",
              "rows/s (M)");
  for (const Row& r : rows) {
    std::printf("%-46s %9.2f %11.1f %10.0f %12.2f\n", r.what.c_str(), r.seconds, r.bytes / 1e6,
                r.bytes / 1e6 / r.seconds, r.rows / 1e6 / r.seconds);
  }
  std::printf("\n%llu rows x %u dims, %u state floats, %u shards, fsync %s, 2 writer threads\n",
              static_cast<unsigned long long>(n), dim, sf, shards, FLAGS_sync ? "on" : "off");
  std::printf("command: %s\n", command.c_str());
  if (FLAGS_keep) {
    std::printf("kept: %s\n", dir.c_str());
  } else {
    fs::remove_all(dir);
  }
  return 0;
}

}  // namespace
}  // namespace eddy::bench

int main(int argc, char** argv) {
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);
  gflags::SetUsageMessage("time and size of model versions: model_format_bench [--rows=N ...]");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  return eddy::bench::Main(command);
}
