// eddy_train: streaming training of a CTR model on the parameter servers.
//   build/bin/eddy_train --local --data=stream.tsv --model=deepfm
//   mpirun -np 4 build/bin/eddy_train --flagfile=scripts/train.flags
// Each worker reads its share of the stream, trains through the sliding window
// and reports progressive-validation metrics; the scheduler prints a progress
// line about once a second, writes them as JSON lines (--metrics_out) and prints
// the final summary.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <optional>
#include <set>
#include <sstream>


#include "common/table_config.h"
#include "job/job_flags.h"
#include "job/offset_committer.h"
#include "job/train_metrics.h"
#include "job/train_progress.h"
#include "worker/data/kafka.h"
#include "worker/data/parsed_stream.h"
#include "worker/data/read_ahead_source.h"
#include "worker/data/source.h"
#include "worker/generator/generator_source.h"
#include "worker/trainer.h"

DEFINE_string(data, "",
              "The stream: comma-separated files and directories (a directory = its files in name "
              "order), '-' for stdin, zmq:tcp://host:port to connect a PULL socket to a "
              "producer's PUSH socket (one row per message), or gen[:rows=N,drift=D,seed=S,ctr=C,"
              "signal=X,vocab=V] for eddy_gen's stream generated on the fly. Files and generated "
              "rows are split between workers by row number (row i goes to worker i mod W); with "
              "zmq each worker gets the rows the producer sends it; stdin needs a single worker. "
              "kafka://host:port[,host:port...]/topic[?group=G&start=earliest|latest|<unix ms>"
              "&end=never|latest&rows=one|lines] reads a Kafka topic: its partitions are dealt "
              "to the workers (partition p to worker p mod W), versions record every "
              "partition's offset and a resume seeks there, with any number of workers.");
DEFINE_int32(kafka_timeout_ms, 60000,
             "Kafka: how long to wait for an unreachable broker, at start and mid-job, before "
             "the job fails (it goes on where it was when the broker comes back).");
DEFINE_string(format, "criteo", "Row format: criteo, libsvm or libffm.");
DEFINE_bool(follow, false,
            "Keep reading the (single) --data file as it grows, like tail -f; the job then runs "
            "until --max_rows or it is stopped.");
DEFINE_int32(passes, 1, "Passes over file data (every row is trained on once per pass).");
DEFINE_uint64(max_rows, 0, "Stop after this many fresh rows per worker (0: end of the stream).");
DEFINE_double(max_bad_row_rate, 0.01,
              "Tolerated fraction of bad rows (counted, the first few logged, skipped); the job "
              "stops with an error beyond it. 0: the first bad row stops it; 1: never.");
DEFINE_string(model, "deepfm", "Model: lr, fm, wdl (Wide&Deep) or deepfm.");
DEFINE_int32(emb_dim, 16, "Embedding dimension (ignored by lr).");
DEFINE_string(hidden, "400,400,400", "MLP layer sizes of wdl and deepfm, comma-separated.");
DEFINE_string(int_features, "buckets",
              "How Criteo's integer columns enter the model: both (log1p dense inputs and "
              "log2-bucket ids), dense (log1p dense inputs only) or buckets (ids only).");
DEFINE_int32(num_fields, 0,
             "Feature slots per row; 0: 39 for criteo (13 integer + 26 categorical fields). "
             "libffm uses the field number as slot, libsvm the position in the row; features that "
             "do not fit are dropped and counted.");
DEFINE_int32(batch_size, 1024, "Rows per mini-batch, fresh and replayed together.");
DEFINE_uint64(window_rows, 0, "Sliding window: rows kept for replay (0: no row bound).");
DEFINE_double(
    window_seconds, 0,
    "Sliding window: keep rows that arrived at most this many seconds ago (0: no bound).");
DEFINE_double(replay_ratio, 0,
              "Fraction of each mini-batch replayed from older rows still in the window, in [0,1); "
              "needs --window_rows or --window_seconds.");
DEFINE_string(linear_opt, "opt=adagrad,lr=0.05,acc=1e-7",
              "Optimizer of every feature's first-order weight (syntax of --tables: "
              "opt=sgd|adagrad|adam|ftrl, lr, beta1, beta2, eps, l1, l2, acc, ftrl_beta).");
DEFINE_double(linear_init_scale, 0, "First-order weights start as normal(0, scale^2); 0: zeros.");
DEFINE_string(sparse_opt, "opt=adam,lr=0.001",
              "Optimizer of every feature's embedding vector (same syntax; unused by lr). Adam's "
              "bias correction counts each row's own updates (lazy sparse Adam).");
DEFINE_double(emb_init_scale, 0.01, "Embedding vectors start as normal(0, scale^2).");
DEFINE_uint32(admit_after, 0,
              "Feature admission: an id gets a row (and its vector starts to learn) only at its "
              "Nth mini-batch; until then it reads as zeros and is counted in a small sketch on "
              "its server. 0 or 1: every id at once.");
DEFINE_double(admit_prob, 0,
              "Feature admission by chance: a pending id is admitted with this probability at "
              "each of its mini-batches (with --admit_after, whichever comes first). 0: off.");
DEFINE_string(dense_opt, "opt=adam,lr=0.0003", "Optimizer of the dense tensors (same syntax).");
DEFINE_uint64(freeze_after_rows, 0,
              "Stop updating the model after this many rows per worker and only score the rest "
              "(a frozen model, to compare with incremental training). 0: never.");
DEFINE_uint64(eval_from_rows, 0,
              "Also report progressive metrics of the rows from this index (per worker) on, to "
              "compare runs on the same tail of the stream. 0: off.");
DEFINE_uint64(seed, 1, "Seed of the initial weights and of replay sampling.");
DEFINE_bool(prefetch, true,
            "Pull the next mini-batch's parameters while the current one is computed (hides the "
            "pull latency; the values then miss this worker's own last push).");
DEFINE_string(metrics_out, "", "Write the job's metrics here as JSON lines, about once a second.");
DEFINE_int32(progress_interval_ms, 1000, "Interval of the progress line and metrics records.");
DEFINE_uint64(metrics_window_rows, 100000, "Rows in the 'recent' progressive-validation window.");
DEFINE_string(straggler, "",
              "worker:ms — slow worker <worker> down by <ms> per mini-batch (to study policies).");
DEFINE_int32(parse_queue, 8, "Mini-batches parsed ahead of training per worker.");

namespace eddy {
namespace {

using worker::ParsedStream;

struct TrainConfig {
  worker::TrainerOptions trainer;
  std::vector<std::string> paths;
  bool stdin_source = false;
  std::string zmq_endpoint;
  std::optional<worker::GeneratedStreamSpec> generated;
  std::optional<worker::KafkaUri> kafka;
  worker::ModelTableOptions tables;
  worker::ParserOptions parser;
  int straggler_worker = -1;
  int straggler_ms = 0;
};

StatusOr<std::vector<int>> ParseSizes(const std::string& text) {
  std::vector<int> sizes;
  std::stringstream in(text);
  std::string part;
  while (std::getline(in, part, ',')) {
    char* end = nullptr;
    long v = std::strtol(part.c_str(), &end, 10);
    if (part.empty() || *end != '\0' || v <= 0 || v > 1 << 16) {
      return InvalidArgumentError("--hidden='" + text +
                                  "': expected positive layer sizes separated by commas");
    }
    sizes.push_back(static_cast<int>(v));
  }
  if (sizes.empty()) return InvalidArgumentError("--hidden is empty");
  return sizes;
}

StatusOr<TrainConfig> ConfigFromFlags() {
  TrainConfig c;
  if (FLAGS_data.empty()) {
    return InvalidArgumentError(
        "--data is required: files or directories, '-' for stdin, zmq:tcp://host:port, or gen "
        "for a generated stream (e.g. --data=gen:rows=1000000,drift=250000)");
  }
  if (FLAGS_data == "-") {
    c.stdin_source = true;
  } else if (worker::IsKafkaUri(FLAGS_data)) {
    StatusOr<worker::KafkaUri> uri = worker::ParseKafkaUri(FLAGS_data);
    if (!uri.ok()) return uri.status().WithContext("--data");
    c.kafka = *uri;
    if (FLAGS_kafka_timeout_ms < 100) return InvalidArgumentError("--kafka_timeout_ms must be >= 100");
  } else if (FLAGS_data.rfind("zmq:", 0) == 0) {
    c.zmq_endpoint = FLAGS_data.substr(4);
  } else if (FLAGS_data == "gen" || FLAGS_data.rfind("gen:", 0) == 0) {
    StatusOr<worker::GeneratedStreamSpec> spec = worker::ParseGeneratedStreamSpec(FLAGS_data);
    if (!spec.ok()) return spec.status().WithContext("--data");
    c.generated = *spec;
  } else {
    std::stringstream in(FLAGS_data);
    std::string part;
    while (std::getline(in, part, ',')) {
      if (!part.empty()) c.paths.push_back(part);
    }
  }
  if (FLAGS_passes < 1) return InvalidArgumentError("--passes must be >= 1");
  if (FLAGS_passes > 1 && c.paths.empty()) {
    return InvalidArgumentError("--passes > 1 needs file data (a stream cannot be read twice)");
  }
  if (FLAGS_follow && (c.paths.size() != 1 || FLAGS_passes > 1)) {
    return InvalidArgumentError("--follow needs exactly one --data file and --passes=1");
  }
  auto& t = c.trainer;
  ASSIGN_OR_RETURN(t.model.kind, models::ParseModelKind(FLAGS_model));
  if (FLAGS_format != "criteo" && FLAGS_format != "libsvm" && FLAGS_format != "libffm") {
    return InvalidArgumentError("unknown --format '" + FLAGS_format +
                                "' (criteo, libsvm or libffm)");
  }
  t.slots = worker::SlotModeForFormat(FLAGS_format);
  t.model.num_fields = FLAGS_num_fields;
  t.model.dense_dim = 0;
  ASSIGN_OR_RETURN(c.parser.criteo_integers, worker::ParseCriteoIntegers(FLAGS_int_features));
  if (FLAGS_format == "criteo") {
    if (t.model.num_fields == 0) {
      t.model.num_fields = worker::CriteoFieldCount(c.parser.criteo_integers);
    }
    t.model.dense_dim = worker::CriteoDenseDim(c.parser.criteo_integers);
  } else if (t.model.num_fields <= 0) {
    return InvalidArgumentError("--format=" + FLAGS_format +
                                " needs --num_fields (feature slots per row)");
  }
  if (FLAGS_emb_dim < 1 || FLAGS_emb_dim > 1024) {
    return InvalidArgumentError("--emb_dim must be in [1, 1024]");
  }
  t.model.emb_dim = t.model.kind == models::ModelKind::kLr ? 0 : FLAGS_emb_dim;
  ASSIGN_OR_RETURN(t.model.hidden, ParseSizes(FLAGS_hidden));
  if (FLAGS_batch_size < 1 || FLAGS_batch_size > 1 << 20) {
    return InvalidArgumentError("--batch_size must be in [1, 1048576]");
  }
  t.window.max_rows = FLAGS_window_rows;
  t.window.max_seconds = FLAGS_window_seconds;
  t.window.replay_ratio = FLAGS_replay_ratio;
  t.window.seed = FLAGS_seed;
  RETURN_IF_ERROR(worker::ValidateWindowOptions(t.window));
  t.prefetch = FLAGS_prefetch;
  t.max_rows = FLAGS_max_rows;
  if (FLAGS_progress_interval_ms < 10) {
    return InvalidArgumentError("--progress_interval_ms must be >= 10");
  }
  t.report_interval = std::chrono::milliseconds(FLAGS_progress_interval_ms);
  if (FLAGS_metrics_window_rows < 8) {
    return InvalidArgumentError("--metrics_window_rows must be >= 8");
  }
  t.metrics.window_rows = FLAGS_metrics_window_rows;
  if (FLAGS_max_bad_row_rate < 0 || FLAGS_max_bad_row_rate > 1) {
    return InvalidArgumentError("--max_bad_row_rate must be in [0, 1]");
  }
  if (FLAGS_parse_queue < 1) return InvalidArgumentError("--parse_queue must be >= 1");
  if (!FLAGS_straggler.empty()) {
    int w = -1, ms = -1;
    char extra = 0;
    if (std::sscanf(FLAGS_straggler.c_str(), "%d:%d%c", &w, &ms, &extra) != 2 || w < 0 || ms < 0) {
      return InvalidArgumentError("--straggler='" + FLAGS_straggler +
                                  "': expected worker:ms, e.g. 0:50");
    }
    c.straggler_worker = w;
    c.straggler_ms = ms;
  }
  t.freeze_after_rows = FLAGS_freeze_after_rows;
  t.eval_from_rows = FLAGS_eval_from_rows;
  c.tables.linear_opt = FLAGS_linear_opt;
  c.tables.linear_init_scale = static_cast<float>(FLAGS_linear_init_scale);
  c.tables.emb_opt = FLAGS_sparse_opt;
  c.tables.emb_init_scale = static_cast<float>(FLAGS_emb_init_scale);
  c.tables.dense_opt = FLAGS_dense_opt;
  if (FLAGS_admit_prob < 0 || FLAGS_admit_prob > 1) {
    return InvalidArgumentError("--admit_prob must be in [0, 1]");
  }
  if (FLAGS_admit_after > 1)
    c.tables.admission = "admit_after=" + std::to_string(FLAGS_admit_after);
  if (FLAGS_admit_prob > 0) {
    if (!c.tables.admission.empty()) c.tables.admission += ",";
    c.tables.admission += "admit_prob=" + std::to_string(FLAGS_admit_prob);
  }
  c.tables.seed = FLAGS_seed;
  if (FLAGS_linear_init_scale < 0 || FLAGS_emb_init_scale < 0) {
    return InvalidArgumentError("--linear_init_scale and --emb_init_scale must be >= 0");
  }
  return c;
}

// What a model version records about the model, so a serving replica can
// rebuild it (Manifest.attributes).
std::map<std::string, std::string> ModelAttributes(const models::ModelOptions& m) {
  std::map<std::string, std::string> a;
  a["model"] = FLAGS_model;
  a["emb_dim"] = std::to_string(m.emb_dim);
  a["num_fields"] = std::to_string(m.num_fields);
  a["dense_dim"] = std::to_string(m.dense_dim);
  a["hidden"] = FLAGS_hidden;
  a["format"] = FLAGS_format;
  if (FLAGS_format == "criteo") a["int_features"] = FLAGS_int_features;
  a["sparse_table"] = "emb";
  return a;
}

// The partition positions a resumed version recorded (every worker's: the
// partitions are dealt again), for the partitions in `mine`.
StatusOr<std::map<int32_t, worker::PartitionPositions::Entry>> ResumedPartitions(
    const proto::ClusterView& view, const std::vector<int32_t>& mine) {
  worker::PartitionPositions all;
  for (const proto::WorkerCut& cut : view.resume_positions()) {
    if (cut.stream_state().empty()) continue;
    ASSIGN_OR_RETURN(proto::Manifest::StreamPosition position,
                     worker::PartitionPositions::Parse(cut.stream_state()));
    all.MergeFrom(position);
  }
  std::map<int32_t, worker::PartitionPositions::Entry> resumed;
  for (int32_t p : mine) {
    auto it = all.entries().find(p);
    if (it != all.entries().end()) resumed[p] = it->second;
  }
  return resumed;
}

// A Kafka topic: this worker's partitions, each from its resumed position or
// the start the URI asks for. *start gets every partition's starting position.
StatusOr<std::unique_ptr<worker::LineSource>> OpenKafka(const worker::KafkaUri& uri,
                                                        const proto::ClusterView& view,
                                                        worker::PartitionPositions* start,
                                                        worker::KafkaSource** opened) {
  worker::KafkaSourceOptions options;
  options.uri = uri;
  options.partitions.assign(view.stream_partitions().begin(), view.stream_partitions().end());
  ASSIGN_OR_RETURN(options.resume, ResumedPartitions(view, options.partitions));
  options.broker_timeout = std::chrono::milliseconds(FLAGS_kafka_timeout_ms);
  if (options.partitions.empty()) {
    LOG(WARNING) << "worker " << view.your_id() << ": no partition of " << uri.topic
                 << " is left for this worker (more workers than partitions); it trains nothing";
  }
  ASSIGN_OR_RETURN(std::unique_ptr<worker::KafkaSource> source,
                   worker::KafkaSource::Open(std::move(options)));
  for (const auto& [p, entry] : source->StartPositions()) start->Set(p, entry);
  *opened = source.get();
  // librdkafka's per-message work on a thread of its own, parsing on the
  // stream's: two cores instead of one (BENCHMARKS.md, Kafka).
  return std::unique_ptr<worker::LineSource>(
      std::make_unique<worker::ReadAheadSource>(std::move(source)));
}

// This worker's share of the stream.
StatusOr<std::unique_ptr<worker::LineSource>> OpenSource(const TrainConfig& c, zmq::context_t& ctx,
                                                         int worker, int num_workers) {
  if (c.stdin_source) {
    if (num_workers != 1) {
      return InvalidArgumentError("--data=- (stdin) works with one worker only; got " +
                                  std::to_string(num_workers));
    }
    return std::unique_ptr<worker::LineSource>(std::make_unique<worker::FdSource>(0));
  }
  if (!c.zmq_endpoint.empty()) {
    ASSIGN_OR_RETURN(auto source, worker::ZmqPullSource::Create(ctx, c.zmq_endpoint, false));
    return std::unique_ptr<worker::LineSource>(std::move(source));
  }
  std::unique_ptr<worker::LineSource> source;
  if (c.generated) {
    source = std::make_unique<worker::GeneratorSource>(*c.generated);
  } else if (FLAGS_follow) {
    ASSIGN_OR_RETURN(source, worker::FollowFileSource::Open(c.paths[0]));
  } else {
    std::vector<std::string> paths;
    for (int p = 0; p < FLAGS_passes; ++p)
      paths.insert(paths.end(), c.paths.begin(), c.paths.end());
    ASSIGN_OR_RETURN(source, worker::FileListSource::Open(paths));
  }
  if (num_workers > 1) {
    source = std::make_unique<worker::ShardedSource>(std::move(source), worker, num_workers);
  }
  return source;
}

// One training run from the positions in client.view(): the job's start, a
// resumed version, or the version a recovery rolled back to (the launcher runs
// it again after a recovery).
StatusOr<std::string> RunWorker(const TrainConfig& c, worker::Client& client) {
  zmq::context_t context;  // for a ZeroMQ source; separate from the client's
  worker::PartitionPositions stream_start;
  worker::KafkaSource* kafka = nullptr;  // owned by `stream` below, which outlives training
  std::unique_ptr<worker::LineSource> source;
  if (c.kafka) {
    ASSIGN_OR_RETURN(source, OpenKafka(*c.kafka, client.view(), &stream_start, &kafka));
  } else {
    ASSIGN_OR_RETURN(source, OpenSource(c, context, client.worker_id(), client.num_workers()));
  }
  ASSIGN_OR_RETURN(std::unique_ptr<worker::Parser> parser,
                   worker::MakeParser(FLAGS_format, c.parser));
  worker::ParsedStreamOptions stream_options;
  stream_options.batch_size = static_cast<size_t>(FLAGS_batch_size);
  if (c.trainer.window.replay_ratio > 0) {
    // Fresh rows per batch; the window tops the batch up with replayed rows.
    stream_options.batch_size = std::max<size_t>(
        1, static_cast<size_t>(FLAGS_batch_size * (1 - c.trainer.window.replay_ratio) + 0.5));
  }
  stream_options.queue_depth = static_cast<size_t>(FLAGS_parse_queue);
  stream_options.budget.max_bad_rate = FLAGS_max_bad_row_rate;
  ParsedStream stream(std::move(source), std::move(parser), stream_options);

  ASSIGN_OR_RETURN(std::unique_ptr<models::CtrModel> model,
                   models::CtrModel::Create(c.trainer.model));
  worker::TrainerOptions options = c.trainer;
  options.window.seed = c.trainer.window.seed * 7919 + static_cast<uint64_t>(client.worker_id());
  if (client.worker_id() == c.straggler_worker) {
    options.delay_per_batch = std::chrono::milliseconds(c.straggler_ms);
  }
  if (c.kafka) {
    // Kafka sources seek to their positions; nothing is read twice to be skipped.
    options.stream_topic = c.kafka->topic;
    options.stream_start = std::move(stream_start);
    options.stream_ends = [kafka] { return kafka->HighWatermarks(); };
  } else {
    for (const auto& p : client.view().resume_positions()) {
      if (p.worker() == client.worker_id()) options.skip_rows = p.rows_consumed();
    }
  }
  worker::Trainer trainer(client, *model, options);
  ASSIGN_OR_RETURN(worker::TrainerStats stats, trainer.Run(stream));
  std::string report;
  stats.AppendTo(&report);
  return report;
}

int Main(int argc, char** argv) {
  // Spinning OpenMP barriers collapse on a loaded host (oneDNN's threads spin while
  // the servers and the parser need the cores). libgomp reads OMP_WAIT_POLICY only
  // when it is loaded, so set it and start again; a user's own setting wins.
  if (std::getenv("OMP_WAIT_POLICY") == nullptr) {
    setenv("OMP_WAIT_POLICY", "passive", 1);
    execv("/proc/self/exe", argv);
    PLOG(WARNING) << "could not restart with OMP_WAIT_POLICY=passive; going on without it";
  }
  // Every mini-batch allocates and frees megabyte-sized buffers (dense gradients,
  // pulled tensors, messages). By default glibc maps and unmaps each one, paying
  // a page fault per 4 KiB every time; keep them in the heap for reuse instead.
  mallopt(M_MMAP_THRESHOLD, 256 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
  gflags::SetUsageMessage(
      "streaming CTR training on Eddy's parameter servers.\n"
      "  eddy_train --local --data=stream.tsv [--model=deepfm ...]\n"
      "  mpirun -np 4 eddy_train --flagfile=job.flags   (rank 0 scheduler, then servers, "
      "then workers)");
  job::ParseFlags(&argc, &argv);
  if (!gflags::GetCommandLineFlagInfoOrDie("tables").is_default) {
    LOG(ERROR) << "eddy_train derives its tables from the model flags (--model, --emb_dim, "
                  "--hidden, --linear_opt, --sparse_opt, --dense_opt); drop --tables";
    return 1;
  }
  StatusOr<job::JobOptions> job = job::JobOptionsFromFlags();
  if (!job.ok()) {
    LOG(ERROR) << job.status();
    return 1;
  }
  StatusOr<TrainConfig> config = ConfigFromFlags();
  if (!config.ok()) {
    LOG(ERROR) << config.status();
    return 1;
  }
  {
    // The tables follow from the model; every process derives the same ones.
    StatusOr<std::unique_ptr<models::CtrModel>> model =
        models::CtrModel::Create(config->trainer.model);
    if (!model.ok()) {
      LOG(ERROR) << model.status();
      return 1;
    }
    StatusOr<std::vector<proto::TableConfig>> tables =
        worker::ModelTables(**model, config->trainer.sparse_table, config->tables);
    if (!tables.ok()) {
      LOG(ERROR) << tables.status().WithContext("--linear_opt / --sparse_opt / --dense_opt");
      return 1;
    }
    job->scheduler_options.tables = std::move(tables).value();
  }

  std::unique_ptr<std::ofstream> metrics_out;
  if (!FLAGS_metrics_out.empty()) {
    metrics_out = std::make_unique<std::ofstream>(FLAGS_metrics_out, std::ios::trunc);
    if (!*metrics_out) {
      LOG(ERROR) << "cannot write --metrics_out=" << FLAGS_metrics_out;
      return 1;
    }
  }
  const bool tty = isatty(STDERR_FILENO) != 0;
  std::unique_ptr<job::TrainProgress> progress;  // made on the scheduler's first call
  MetricsRegistry registry;  // --metrics_port: what /metrics shows
  job::TrainMetrics train_metrics(&registry);
  job->metrics = &registry;
  job::WorkerProgram program;
  program.run = [&](worker::Client& client) { return RunWorker(*config, client); };
  program.progress_interval = std::chrono::milliseconds(FLAGS_progress_interval_ms);
  program.progress = [&](const scheduler::ProgressInputs& in, bool final) {
    if (progress == nullptr) {
      // The first call comes one interval after the cluster is up: start there.
      progress =
          std::make_unique<job::TrainProgress>(static_cast<int>(in.worker_metrics.size()),
                                               SteadyClock::now() - program.progress_interval);
    }
    progress->SetServers(in.servers);
    if (final) return;  // summarize() writes the last record from the final reports
    if (!progress->Update(in.worker_metrics, SteadyClock::now())) return;
    train_metrics.Update(*progress);
    std::fprintf(stderr, tty ? "\r%s\033[K" : "%s\n", progress->Line().c_str());
    if (metrics_out) *metrics_out << progress->JsonLine(false) << std::endl;
  };
  program.summarize = [&](const std::vector<std::string>& reports) -> Status {
    if (tty) std::fprintf(stderr, "\n");
    if (progress == nullptr) {
      progress = std::make_unique<job::TrainProgress>(static_cast<int>(reports.size()));
    }
    const uint64_t bad_before = progress->bad_reports();
    if (!progress->Update(reports, SteadyClock::now()) || progress->bad_reports() > bad_before) {
      return DataLossError("some workers' final reports could not be read");
    }
    std::printf("%s", progress->Summary().c_str());
    std::fflush(stdout);
    if (metrics_out) *metrics_out << progress->JsonLine(true) << std::endl;
    return OkStatus();
  };
  // Model versions: what they record besides the tables, and what the user sees.
  auto merged = [](const std::vector<std::string>& latest) {
    std::optional<worker::TrainerStats> total;
    for (const std::string& r : latest) {
      if (r.empty()) continue;
      auto stats = worker::TrainerStats::Parse(r);
      if (!stats.ok()) continue;
      if (!total) {
        total = std::move(*stats);
      } else {
        total->Merge(*stats).IgnoreError();
      }
    }
    if (total) return std::move(*total);
    return worker::TrainerStats();
  };
  scheduler::SchedulerOptions& so = job->scheduler_options;
  so.rows_from_metrics = [merged](const std::vector<std::string>& latest) {
    return merged(latest).rows;
  };
  so.version_metrics = [merged](const std::vector<std::string>& latest) {
    const worker::TrainerStats t = merged(latest);
    std::map<std::string, double> m;
    m["rows"] = static_cast<double>(t.rows);
    if (t.metrics.SinceStart().count() > 0) {
      m["auc"] = t.metrics.SinceStart().Auc();
      m["logloss"] = t.metrics.SinceStart().LogLoss();
      const worker::BinaryMetrics recent = t.metrics.RecentWindow();
      if (recent.count() > 0) {
        m["recent_auc"] = recent.Auc();
        m["recent_logloss"] = recent.LogLoss();
      }
    }
    return m;
  };
  so.version_attributes = ModelAttributes(config->trainer.model);
  // Kafka: the scheduler deals the topic's partitions, and each committed
  // version's offsets go to the consumer group (for lag tools; resumes use the
  // version's own record).
  std::unique_ptr<job::OffsetCommitter> committer;
  if (config->kafka) {
    program.prepare_scheduler = [&](scheduler::SchedulerOptions* o) -> Status {
      const worker::KafkaUri& uri = *config->kafka;
      const auto timeout = std::chrono::milliseconds(FLAGS_kafka_timeout_ms);
      ASSIGN_OR_RETURN(int32_t partitions, worker::KafkaPartitionCount(uri, timeout));
      o->stream_partitions = partitions;
      if (partitions < o->num_workers) {
        LOG(WARNING) << uri.topic << " has " << partitions << " partition(s) for "
                     << o->num_workers << " workers: " << o->num_workers - partitions
                     << " worker(s) will have nothing to read";
      }
      bool partitioned = false;
      std::set<int32_t> recorded;
      for (const proto::WorkerCut& cut : o->resume_positions) {
        if (cut.stream_state().empty()) continue;  // a worker lost before its first clock
        partitioned = true;
        ASSIGN_OR_RETURN(proto::Manifest::StreamPosition position,
                         worker::PartitionPositions::Parse(cut.stream_state()));
        if (position.topic() != uri.topic) {
          return InvalidArgumentError("--resume_from: the version was cut on topic '" +
                                      position.topic() + "', but --data reads '" + uri.topic + "'");
        }
        for (const auto& p : position.partitions()) recorded.insert(p.partition());
      }
      if (!o->resume_positions.empty() && !partitioned) {
        return InvalidArgumentError(
            "--resume_from: the version was cut on a file stream (row positions), not on a "
            "Kafka topic; resume it with the same --data");
      }
      if (partitioned && static_cast<int32_t>(recorded.size()) < partitions) {
        LOG(WARNING) << "--resume_from: " << partitions - static_cast<int32_t>(recorded.size())
                     << " partition(s) of " << uri.topic
                     << " have no recorded offset (new partitions?); they start at " << "start="
                     << (uri.start == worker::KafkaUri::Start::kEarliest ? "earliest"
                         : uri.start == worker::KafkaUri::Start::kLatest ? "latest"
                                                                          : "<timestamp>");
      }
      committer = std::make_unique<job::OffsetCommitter>(
          [uri, timeout](const job::PartitionOffsets& offsets) {
            return worker::CommitKafkaOffsets(uri, offsets, timeout);
          });
      return OkStatus();
    };
  }
  so.on_recovery = [&](const scheduler::RecoveryEvent& e) {
    train_metrics.OnRecovery(e);
    char line[512];
    if (e.done) {
      std::snprintf(line, sizeof(line),
                    "recovered from the loss of %s: back at version %llu (epoch %u) after %.2f "
                    "s; about %llu rows are trained again",
                    e.lost.c_str(), static_cast<unsigned long long>(e.version), e.epoch,
                    e.seconds, static_cast<unsigned long long>(e.rows_replayed));
    } else {
      std::snprintf(line, sizeof(line), "%s was lost: rolling back to version %llu (epoch %u)",
                    e.lost.c_str(), static_cast<unsigned long long>(e.version), e.epoch);
    }
    std::fprintf(stderr, tty ? "\r%s\033[K\n" : "%s\n", line);
    if (metrics_out) {
      *metrics_out << "{\"event\":\"recovery\",\"phase\":\"" << (e.done ? "done" : "start")
                   << "\",\"lost\":\"" << e.lost << "\",\"version\":" << e.version
                   << ",\"epoch\":" << e.epoch << ",\"seconds_down\":" << e.seconds
                   << ",\"rows_replayed\":" << e.rows_replayed << "}"
                   << std::endl;
    }
  };
  so.on_version = [&](const scheduler::VersionSummary& v) {
    train_metrics.OnVersion(v);
    if (v.ok && committer != nullptr) {
      StatusOr<job::PartitionOffsets> offsets = job::OffsetsOfCuts(v.cuts);
      if (offsets.ok()) {
        committer->Offer(v.version, std::move(offsets).value());
      } else {
        LOG(WARNING) << "version " << v.version << ": offsets not committed: " << offsets.status();
      }
    }
    char line[512];
    if (v.ok) {
      std::snprintf(line, sizeof(line),
                    "version %llu (%s) %s: %llu rows, %.1f MB, training paused %.2f ms, written "
                    "in %.2f s",
                    static_cast<unsigned long long>(v.version), v.parent == 0 ? "full" : "delta",
                    v.dir.c_str(), static_cast<unsigned long long>(v.rows), v.bytes / 1e6,
                    v.pause_seconds * 1e3, v.total_seconds);
    } else {
      std::snprintf(line, sizeof(line), "version %llu FAILED (older versions stay valid): %s",
                    static_cast<unsigned long long>(v.version), v.error.c_str());
    }
    std::fprintf(stderr, tty ? "\r%s\033[K\n" : "%s\n", line);
    if (metrics_out) {
      char json[512];
      std::snprintf(json, sizeof(json),
                    "{\"event\":\"version\",\"version\":%llu,\"ok\":%s,\"kind\":\"%s\","
                    "\"rows\":%llu,\"bytes\":%llu,\"pause_ms\":%.3f,\"cut_window_ms\":%.3f,"
                    "\"write_s\":%.4f,\"total_s\":%.4f}",
                    static_cast<unsigned long long>(v.version), v.ok ? "true" : "false",
                    v.parent == 0 ? "full" : "delta", static_cast<unsigned long long>(v.rows),
                    static_cast<unsigned long long>(v.bytes), v.pause_seconds * 1e3,
                    v.window_seconds * 1e3, v.write_seconds, v.total_seconds);
      *metrics_out << json << std::endl;
    }
  };
  return job::RunJob(std::move(*job), program);
}

}  // namespace
}  // namespace eddy

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  return eddy::Main(argc, argv);
}
