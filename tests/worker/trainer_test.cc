// The training loop against a real in-process cluster: a generated click stream
// is split over two workers and trained on once; the progressive AUC must beat
// chance clearly and approach the generator's best possible AUC.
#include "worker/trainer.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/testing/local_cluster.h"
#include "worker/data/source.h"
#include "worker/dedup.h"
#include "worker/generator/generator.h"
#include "worker/metrics/auc.h"

namespace eddy::worker {
namespace {

namespace fs = std::filesystem;

struct Stream {
  fs::path path;
  std::vector<float> truth;
  std::vector<float> labels;
};

// Writes `rows` generated rows (small vocabularies so a short run learns).
Stream Generate(const std::string& name, uint64_t rows, uint64_t seed) {
  Stream s;
  s.path = fs::temp_directory_path() / (name + "_" + std::to_string(getpid()) + ".tsv");
  GeneratorOptions g;
  g.seed = seed;
  g.drift_every = 0;
  g.max_vocab = 500;
  g.signal = 2.0;
  g.ctr = 0.2;
  ClickStreamGenerator gen(g);
  std::string text;
  for (uint64_t r = 0; r < rows; ++r) {
    float p = 0;
    s.labels.push_back(static_cast<float>(gen.AppendRow(&text, &p)));
    s.truth.push_back(p);
  }
  std::ofstream(s.path) << text;
  return s;
}

models::ModelOptions SmallModel(models::ModelKind kind) {
  models::ModelOptions m;
  m.kind = kind;
  m.num_fields = 39;
  m.dense_dim = 13;
  m.emb_dim = kind == models::ModelKind::kLr ? 0 : 8;
  m.hidden = {32, 16};
  return m;
}

struct JobResult {
  std::vector<TrainerStats> stats;
  TrainerStats total;
  std::vector<float> sparse;              // final rows of every id in the stream
  std::vector<std::vector<float>> dense;  // final dense tensors
};

struct JobSetup {
  size_t batch_size = 256;
  int staleness = -1;
  std::string aggregate = "none";
  bool fetch_params = false;
};

// Every feature id of the stream, in order of first appearance.
std::vector<uint64_t> StreamIds(const Stream& stream) {
  std::ifstream in(stream.path);
  std::string line;
  auto parser = MakeCriteoParser();
  Example e;
  std::vector<uint64_t> ids;
  while (std::getline(in, line)) {
    if (parser->Parse(line, &e).ok()) ids.insert(ids.end(), e.ids.begin(), e.ids.end());
  }
  return Unique(ids).keys;
}

// Trains `model` on `stream` with `workers` workers of one local cluster.
JobResult Train(const Stream& stream, models::ModelOptions model_options, int workers,
                const TrainerOptions& options, const JobSetup& setup = JobSetup()) {
  auto probe = models::CtrModel::Create(model_options);
  EXPECT_TRUE(probe.ok()) << probe.status();
  ModelTableOptions table_options;
  table_options.seed = 3;
  auto tables = ModelTables(**probe, "emb", table_options);
  EXPECT_TRUE(tables.ok()) << tables.status();
  testing::LocalClusterOptions cluster_options;
  cluster_options.num_servers = 2;
  cluster_options.num_workers = workers;
  cluster_options.table_configs = *tables;
  // Sanitizer builds on a loaded 2-core machine can starve the scheduler's
  // thread for seconds; liveness is not what these tests check.
  cluster_options.node_timeout = std::chrono::seconds(120);
  cluster_options.staleness = setup.staleness;
  cluster_options.aggregate = setup.aggregate;
  auto cluster = testing::LocalCluster::Start(cluster_options);
  EXPECT_TRUE(cluster.ok()) << cluster.status();
  JobResult result;
  result.stats.resize(workers);
  std::vector<Status> status(workers);
  {
    std::vector<std::jthread> threads;
    for (int w = 0; w < workers; ++w) {
      threads.emplace_back([&, w] {
        auto files = FileListSource::Open({stream.path.string()});
        if (!files.ok()) {
          status[w] = files.status();
          return;
        }
        ParsedStreamOptions stream_options;
        stream_options.batch_size = setup.batch_size;
        ParsedStream parsed(std::make_unique<ShardedSource>(std::move(*files), w, workers),
                            MakeCriteoParser(), stream_options);
        auto model = models::CtrModel::Create(model_options);
        TrainerOptions o = options;
        o.model = model_options;
        Trainer trainer((*cluster)->client(w), **model, o);
        auto stats = trainer.Run(parsed);
        status[w] = stats.status();
        if (stats.ok()) result.stats[w] = *stats;
      });
    }
  }
  for (int w = 0; w < workers; ++w) EXPECT_TRUE(status[w].ok()) << status[w];
  if (setup.fetch_params) {
    worker::Client& client = (*cluster)->client(0);
    OpPtr pull = client.Pull("emb", StreamIds(stream));
    EXPECT_TRUE(pull->Wait().ok());
    result.sparse.assign(pull->values().begin(), pull->values().end());
    auto model = models::CtrModel::Create(model_options);
    for (const auto& spec : (*model)->dense_params()) {
      OpPtr dense = client.PullDense(spec.name);
      EXPECT_TRUE(dense->Wait().ok());
      result.dense.emplace_back(dense->values().begin(), dense->values().end());
    }
  }
  EXPECT_TRUE((*cluster)->Shutdown().ok());
  result.total = result.stats[0];
  for (int w = 1; w < workers; ++w) EXPECT_TRUE(result.total.Merge(result.stats[w]).ok());
  return result;
}

TEST(TrainerTest, DeepFmOnTwoWorkersLearnsTheStreamAndSeesEveryRowOnce) {
  const Stream stream = Generate("deepfm", 40000, 11);
  const double best = ExactAuc(stream.truth, stream.labels);
  const TrainerOptions options;
  JobResult r = Train(stream, SmallModel(models::ModelKind::kDeepFm), 2, options);
  EXPECT_EQ(r.total.rows, 40000u);  // every row exactly once
  EXPECT_EQ(r.stats[0].rows, 20000u);
  EXPECT_EQ(r.total.metrics.SinceStart().count(), 40000u);
  EXPECT_EQ(r.total.bad_rows, 0u);
  EXPECT_EQ(r.total.dropped_features, 0u);
  const double auc = r.total.metrics.SinceStart().Auc();
  const double recent = r.total.metrics.RecentWindow().Auc();
  EXPECT_GT(auc, 0.7) << "best possible " << best;
  // After 40k rows the model has closed most of the way from chance to the best
  // possible AUC (the truth the generator wrote).
  EXPECT_GT(recent, 0.5 + 0.6 * (best - 0.5))
      << "recent-window AUC " << recent << ", best possible " << best;
  fs::remove(stream.path);
}

TEST(TrainerTest, LrWithReplayTrainsReplayedRowsWithoutScoringThem) {
  const Stream stream = Generate("lr", 20000, 12);
  TrainerOptions options;
  options.window.max_rows = 5000;
  options.window.replay_ratio = 0.25;
  JobResult r = Train(stream, SmallModel(models::ModelKind::kLr), 1, options);
  EXPECT_EQ(r.total.rows, 20000u);
  EXPECT_EQ(r.total.metrics.SinceStart().count(), 20000u);  // replayed rows are not scored
  // About a third of a fresh batch is added as replay once the window holds rows.
  EXPECT_GT(r.total.replayed_rows, 20000u / 4);
  EXPECT_LT(r.total.replayed_rows, 20000u / 2);
  EXPECT_GT(r.total.metrics.SinceStart().Auc(), 0.65);
  fs::remove(stream.path);
}

TEST(TrainerTest, SynchronousWithoutPrefetchAndMaxRowsStopsExactly) {
  const Stream stream = Generate("maxrows", 5000, 13);
  TrainerOptions options;
  options.prefetch = false;
  options.max_rows = 1234;
  JobResult r = Train(stream, SmallModel(models::ModelKind::kFm), 1, options);
  EXPECT_EQ(r.total.rows, 1234u);
  EXPECT_EQ(r.total.batches, 5u);  // 4 x 256 + 210
  fs::remove(stream.path);
}

// BSP with W workers and batch b applies, per clock, the mean of the workers'
// gradients over rows [c*W*b, (c+1)*W*b) — the same as one worker with batch W*b on
// the same rows (rows are dealt to workers by row number).
TEST(TrainerTest, BspWithThreeWorkersEqualsOneWorkerWithTripleBatch) {
  const Stream stream = Generate("bsp", 64 * 3 * 20, 14);  // 20 clocks
  const TrainerOptions options;
  const models::ModelOptions model = SmallModel(models::ModelKind::kDeepFm);
  JobSetup bsp{.batch_size = 64, .staleness = 0, .aggregate = "mean", .fetch_params = true};
  JobResult three = Train(stream, model, 3, options, bsp);
  JobSetup single = bsp;
  single.batch_size = 64 * 3;
  JobResult one = Train(stream, model, 1, options, single);
  ASSERT_EQ(three.total.batches, 60u);
  ASSERT_EQ(one.total.batches, 20u);
  ASSERT_EQ(three.sparse.size(), one.sparse.size());
  ASSERT_FALSE(one.sparse.empty());
  double max_diff = 0, max_change = 0;
  for (size_t i = 0; i < one.sparse.size(); ++i) {
    max_diff = std::max(max_diff, std::abs(double{three.sparse[i]} - one.sparse[i]));
  }
  ASSERT_EQ(three.dense.size(), one.dense.size());
  for (size_t t = 0; t < one.dense.size(); ++t) {
    ASSERT_EQ(three.dense[t].size(), one.dense[t].size());
    for (size_t i = 0; i < one.dense[t].size(); ++i) {
      max_diff = std::max(max_diff, std::abs(double{three.dense[t][i]} - one.dense[t][i]));
    }
  }
  // The bias moved (training happened), and both runs agree to float rounding.
  max_change = std::abs(one.dense[0][0]);
  EXPECT_GT(max_change, 1e-3);
  EXPECT_LT(max_diff, 2e-5);
  // The same predictions were made: identical progressive logloss.
  EXPECT_NEAR(three.total.metrics.SinceStart().LogLoss(), one.total.metrics.SinceStart().LogLoss(),
              1e-5);
  fs::remove(stream.path);
}

// One worker: its pulls are never behind anyone (staleness 0). With prefetch the
// values for batch n + 1 are read before batch n's push, so each gradient is one
// update old; without prefetch, zero.
TEST(TrainerTest, StalenessAndAgeOfOneWorkerFollowFromThePipeline) {
  const Stream stream = Generate("age", 256 * 12, 15);
  const models::ModelOptions model = SmallModel(models::ModelKind::kLr);
  TrainerOptions prefetch;
  JobResult with = Train(stream, model, 1, prefetch);
  EXPECT_EQ(with.total.staleness.count(), 12u);
  EXPECT_EQ(with.total.staleness.max(), 0u);
  EXPECT_EQ(with.total.age.count(), 12u);
  EXPECT_EQ(with.total.age.Mean(), 11.0 / 12.0);  // the first batch read the initial values
  EXPECT_EQ(with.total.age.max(), 1u);
  TrainerOptions no_prefetch;
  no_prefetch.prefetch = false;
  JobResult without = Train(stream, model, 1, no_prefetch);
  EXPECT_EQ(without.total.age.count(), 12u);
  EXPECT_EQ(without.total.age.max(), 0u);
  fs::remove(stream.path);
}

TEST(TrainerStatsTest, RoundTripsMergesAndRejectsGarbage) {
  TrainerStats a;
  a.rows = 10;
  a.replayed_rows = 2;
  a.batches = 1;
  a.bad_rows = 3;
  a.seconds = 1.5;
  a.metrics.Add(0.9f, 1);
  a.metrics.Add(0.2f, 0);
  std::string bytes;
  a.AppendTo(&bytes);
  auto parsed = TrainerStats::Parse(bytes);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->rows, 10u);
  EXPECT_EQ(parsed->bad_rows, 3u);
  EXPECT_EQ(parsed->metrics.SinceStart(), a.metrics.SinceStart());
  TrainerStats b = *parsed;
  b.seconds = 2.5;
  ASSERT_TRUE(b.Merge(a).ok());
  EXPECT_EQ(b.rows, 20u);
  EXPECT_EQ(b.seconds, 2.5);
  EXPECT_EQ(b.metrics.SinceStart().count(), 4u);
  EXPECT_FALSE(TrainerStats::Parse(bytes.substr(0, bytes.size() - 1)).ok());
  EXPECT_FALSE(TrainerStats::Parse("garbage").ok());
  EXPECT_FALSE(TrainerStats::Parse(bytes + "x").ok());
}

TEST(ModelTablesTest, OneSparseTableAndOneDenseTensorPerParameter) {
  auto model = models::CtrModel::Create(SmallModel(models::ModelKind::kDeepFm));
  ASSERT_TRUE(model.ok());
  ModelTableOptions o;
  o.linear_opt = "opt=adagrad,lr=0.1";
  o.emb_opt = "opt=adam,lr=0.002";
  o.emb_init_scale = 0.02f;
  o.dense_opt = "opt=adam,lr=0.01";
  o.seed = 5;
  auto tables = ModelTables(**model, "emb", o);
  ASSERT_TRUE(tables.ok()) << tables.status();
  ASSERT_EQ(tables->size(), 1 + (*model)->dense_params().size());
  EXPECT_EQ((*tables)[0].dim(), 9u);
  // The first-order weight is the row's head, with its own optimizer and zeros.
  EXPECT_EQ((*tables)[0].head().dim(), 1u);
  EXPECT_EQ((*tables)[0].head().optimizer().kind(), "adagrad");
  EXPECT_FLOAT_EQ((*tables)[0].head().optimizer().learning_rate(), 0.1f);
  EXPECT_EQ((*tables)[0].head().initializer().kind(), "zeros");
  EXPECT_EQ((*tables)[0].optimizer().kind(), "adam");
  EXPECT_FLOAT_EQ((*tables)[0].optimizer().learning_rate(), 0.002f);
  EXPECT_EQ((*tables)[0].initializer().kind(), "normal");
  EXPECT_FLOAT_EQ((*tables)[0].initializer().scale(), 0.02f);
  for (size_t i = 0; i < (*model)->dense_params().size(); ++i) {
    const auto& spec = (*model)->dense_params()[i];
    const auto& t = (*tables)[i + 1];
    EXPECT_EQ(t.name(), spec.name);
    EXPECT_TRUE(t.dense());
    EXPECT_EQ(t.optimizer().kind(), "adam");
    if (spec.init == models::Initializer::kHeUniform) {
      EXPECT_NEAR(t.initializer().scale(), std::sqrt(6.0 / spec.fan_in), 1e-6);
    }
  }
  o.linear_opt = "opt=nope";
  EXPECT_FALSE(ModelTables(**model, "emb", o).ok());
  o.linear_opt = "opt=sgd";
  o.emb_opt = "lr=-1";
  EXPECT_FALSE(ModelTables(**model, "emb", o).ok());
}

}  // namespace
}  // namespace eddy::worker
