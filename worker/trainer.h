// Trainer: a worker's streaming training loop. It takes parsed mini-batches in
// arrival order, adds replayed rows from the sliding window, deduplicates the
// batch's feature ids, pulls their rows and the dense tensors (the pull for the
// next batch overlaps the compute of the current one), scores the fresh rows
// before training on them (progressive validation), runs the model forward and
// backward and pushes one summed gradient per unique id and per dense tensor.
// Thread-safety: one Trainer per worker thread; Run() is called once.
#ifndef EDDY_WORKER_TRAINER_H_
#define EDDY_WORKER_TRAINER_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/proto/eddy.pb.h"
#include "common/status.h"
#include "models/ctr_model.h"
#include "worker/client.h"
#include "worker/data/parsed_stream.h"
#include "worker/data/slots.h"
#include "worker/data/stream_position.h"
#include "worker/data/window.h"
#include "worker/metrics/count_histogram.h"
#include "worker/metrics/metrics.h"

namespace eddy::worker {

struct TrainerOptions {
  models::ModelOptions model;
  SlotMode slots = SlotMode::kByField;
  // Sparse table holding one row of 1 + emb_dim floats per feature id: the
  // first-order weight, then the embedding (LR: the weight only).
  std::string sparse_table = "emb";
  WindowOptions window;
  // Overlap the pull of batch n + 1 with the compute of batch n. The pulled values
  // then miss this worker's own last push (one step of extra staleness). Only
  // without a staleness bound: under BSP / SSP pulls wait for the clock anyway.
  bool prefetch = true;
  // Stop after this many fresh rows (0: at the end of the stream).
  uint64_t max_rows = 0;
  // Resume: this worker's stream position in the version resumed from. These
  // first rows of its stream were trained on before; they are read and skipped.
  // Positions sent with each clock (Client::ClockAt) count from the stream start.
  uint64_t skip_rows = 0;
  // A partitioned stream (Kafka): its topic and every assigned partition's start
  // position (resumed or resolved from the start flag). The trainer moves them
  // past each trained row and sends them with each clock, so versions record
  // them. Empty topic: not partitioned.
  std::string stream_topic;
  PartitionPositions stream_start;
  // The partitions' ends as the source last saw them (thread-safe), read at each
  // report so lag stays current while rows wait in the parse queue. May be empty.
  std::function<std::map<int32_t, int64_t>()> stream_ends;
  // Batches whose pushes may still be unacknowledged when the next one is sent.
  int max_push_inflight = 2;
  // How often ReportMetrics() is sent to the scheduler.
  std::chrono::milliseconds report_interval{1000};
  ProgressiveOptions metrics;
  // After this many fresh rows, stop updating the model: later batches are only
  // scored (a frozen model, for comparison with incremental training). 0: never.
  uint64_t freeze_after_rows = 0;
  // Fresh rows from this index on are also scored into TrainerStats::eval, so
  // two runs can be compared on the same tail of the stream. 0: no such metrics.
  uint64_t eval_from_rows = 0;
  // Artificial delay per mini-batch (a straggler); 0 for none.
  std::chrono::milliseconds delay_per_batch{0};
};

// How the tables of a model are updated and initialised. Optimizer settings are
// in --tables syntax, e.g. "opt=adagrad,lr=0.05".
struct ModelTableOptions {
  // A feature's first-order weight (the first float of its row; LR's whole row).
  std::string linear_opt = "opt=adagrad,lr=0.05,acc=1e-7";
  float linear_init_scale = 0.0f;  // normal(0, scale^2); 0: zeros
  // A feature's embedding vector (the rest of its row; unused by LR).
  std::string emb_opt = "opt=adam,lr=0.001";
  float emb_init_scale = 0.01f;  // normal(0, scale^2)
  // Feature admission of the sparse table ("" or e.g. "admit_after=2",
  // "admit_prob=0.25": --tables keys, server/admission.h).
  std::string admission;
  // Every dense tensor (the MLP, the bias).
  std::string dense_opt = "opt=adam,lr=0.0003";
  uint64_t seed = 1;
};

// The tables a job needs for `model`: the sparse table (row = first-order weight,
// then the embedding: the weight is the row's head with its own optimizer and
// initializer) and one dense tensor per model parameter, named as the model
// names it, initialised as the model asks (He / Xavier uniform, zeros).
// Errors: InvalidArgument naming the bad setting.
StatusOr<std::vector<proto::TableConfig>> ModelTables(const models::CtrModel& model,
                                                      std::string_view sparse_table,
                                                      const ModelTableOptions& options);

// What a worker reports: cumulative counters and its progressive metrics. Sent to
// the scheduler about once a second and as the final report.
struct TrainerStats {
  uint64_t rows = 0;           // fresh rows trained on (each scored first)
  uint64_t replayed_rows = 0;  // rows trained on again from the window
  uint64_t skipped_rows = 0;   // rows skipped on resume (trained before)
  uint64_t batches = 0;
  uint64_t bad_rows = 0;          // rows the parser rejected
  uint64_t dropped_features = 0;  // features that did not fit a slot
  double seconds = 0;             // wall time since the first batch
  double wait_seconds = 0;        // time spent waiting for pulls
  double data_wait_seconds = 0;   // time spent waiting for parsed rows
  double compute_seconds = 0;     // forward + backward
  // Staleness each mini-batch's pull saw: this worker's clock minus the slowest
  // live worker's clock when the servers read the values.
  CountHistogram staleness;
  // Age of the values read, in versions: updates of the dense "bias" tensor by
  // other workers between this worker's read and the push of its gradient.
  CountHistogram age;
  ProgressiveMetrics metrics;
  BinaryMetrics eval;  // rows from TrainerOptions::eval_from_rows on
  // A partitioned stream: the position in each partition read (with its end as
  // last seen, for lag, and its newest Kafka timestamp, for freshness).
  std::string stream_topic;
  PartitionPositions stream;

  void AppendTo(std::string* out) const;
  // DataLoss on truncated or inconsistent bytes.
  static StatusOr<TrainerStats> Parse(std::string_view bytes);
  // Adds `other` (another worker): counters add, seconds take the max.
  Status Merge(const TrainerStats& other);
};

class Trainer {
 public:
  // Requires options.model to describe `model`. `client` and `model` must outlive
  // the trainer.
  Trainer(Client& client, models::CtrModel& model, TrainerOptions options);
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains on `stream` until it ends (or max_rows). Returns the final stats; errors:
  // the stream's (bad-row budget, source), a failed pull or push, a model error.
  StatusOr<TrainerStats> Run(ParsedStream& stream);

 private:
  struct Step;
  Status Prepare(const ExampleBatch& fresh, Step* step);
  void IssuePulls(Step* step);
  Status Compute(Step* step);
  Status IssuePushes(Step* step);
  void MaybeReport(bool force);
  // Records the age of answered bias pushes (all of them if `wait`).
  void RecordAges(bool wait);

  Client& client_;
  models::CtrModel& model_;
  const TrainerOptions options_;
  const int fields_;
  const int emb_dim_;
  const size_t row_dim_;  // 1 + emb_dim
  SlidingWindow window_;
  TrainerStats stats_;
  std::vector<std::string> dense_tables_;
  SteadyClock::time_point start_;
  SteadyClock::time_point next_report_;
  std::vector<OpPtr> push_ops_;  // of the last max_push_inflight batches
  // Pushes of the bias tensor not yet answered, with the version the gradient was
  // computed from.
  std::deque<std::pair<OpPtr, int64_t>> age_pending_;
  // Scratch reused across steps.
  std::vector<float> emb_in_, linear_in_, grad_emb_, grad_linear_, probs_;
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_TRAINER_H_
