#include "worker/trainer.h"

#include <glog/logging.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <optional>
#include <thread>

#include "common/table_config.h"
#include "worker/dedup.h"
#include "worker/metrics/internal/wire.h"

namespace eddy::worker {
namespace {

constexpr uint32_t kStatsMagic = 0x45445453;  // "EDTS"

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

// "opt=adagrad,lr=0.05" -> ",head_opt=adagrad,head_lr=0.05": settings for a row head.
std::string HeadKeys(std::string_view settings) {
  std::string out;
  size_t start = 0;
  while (start <= settings.size()) {
    size_t end = settings.find(',', start);
    if (end == std::string_view::npos) end = settings.size();
    std::string_view kv = settings.substr(start, end - start);
    while (!kv.empty() && kv.front() == ' ') kv.remove_prefix(1);
    if (!kv.empty()) out += ",head_" + std::string(kv);
    start = end + 1;
  }
  return out;
}

std::string InitKeys(float scale) {
  return scale > 0 ? "init=normal,init_scale=" + std::to_string(scale) : "init=zeros";
}

}  // namespace

StatusOr<std::vector<proto::TableConfig>> ModelTables(const models::CtrModel& model,
                                                      std::string_view sparse_table,
                                                      const ModelTableOptions& options) {
  const auto& m = model.options();
  const int dim = 1 + m.emb_dim;
  const std::string seed = ",seed=" + std::to_string(options.seed);
  std::string spec = std::string(sparse_table) + ":dim=" + std::to_string(dim) + ",";
  if (m.emb_dim == 0) {
    spec += options.linear_opt + "," + InitKeys(options.linear_init_scale) + seed;
  } else {
    spec += options.emb_opt + "," + InitKeys(options.emb_init_scale) + seed + ",head=1" +
            HeadKeys(options.linear_opt) + HeadKeys(InitKeys(options.linear_init_scale));
  }
  if (!options.admission.empty()) spec += "," + options.admission;
  ASSIGN_OR_RETURN(std::vector<proto::TableConfig> sparse, ParseTableSpecs(spec));
  ASSIGN_OR_RETURN(std::vector<proto::TableConfig> dense_proto,
                   ParseTableSpecs("d:shape=1," + options.dense_opt));
  std::vector<proto::TableConfig> tables = std::move(sparse);
  uint64_t index = 0;
  for (const models::DenseParamSpec& p : model.dense_params()) {
    proto::TableConfig t = dense_proto[0];
    t.set_name(p.name);
    t.clear_shape();
    for (int64_t d : p.shape) t.add_shape(static_cast<uint64_t>(d));
    proto::InitializerConfig* init = t.mutable_initializer();
    init->set_seed(options.seed * 1000003 + (++index));
    switch (p.init) {
      case models::Initializer::kZeros:
        init->set_kind("zeros");
        init->set_scale(0);
        break;
      case models::Initializer::kHeUniform:
        init->set_kind("uniform");
        init->set_scale(static_cast<float>(std::sqrt(6.0 / static_cast<double>(p.fan_in))));
        break;
      case models::Initializer::kXavierUniform:
        init->set_kind("uniform");
        init->set_scale(
            static_cast<float>(std::sqrt(6.0 / static_cast<double>(p.fan_in + p.fan_out))));
        break;
    }
    RETURN_IF_ERROR(ValidateTableConfig(t));
    tables.push_back(std::move(t));
  }
  return tables;
}

void TrainerStats::AppendTo(std::string* out) const {
  internal::ByteWriter w(out);
  w.U32(kStatsMagic);
  w.U64(rows);
  w.U64(replayed_rows);
  w.U64(skipped_rows);
  w.U64(batches);
  w.U64(bad_rows);
  w.U64(dropped_features);
  w.F64(seconds);
  w.F64(wait_seconds);
  w.F64(compute_seconds);
  w.F64(data_wait_seconds);
  staleness.AppendTo(out);
  age.AppendTo(out);
  std::string m;
  metrics.AppendTo(&m);
  w.Bytes(m);
  std::string e;
  eval.AppendTo(&e);
  w.Bytes(e);
  w.Bytes(stream.empty() ? std::string() : stream.Serialize(stream_topic));
}

StatusOr<TrainerStats> TrainerStats::Parse(std::string_view bytes) {
  internal::ByteReader r(bytes);
  TrainerStats s;
  uint32_t magic = 0;
  std::string_view m, e, st;
  if (!r.U32(&magic) || magic != kStatsMagic || !r.U64(&s.rows) || !r.U64(&s.replayed_rows) ||
      !r.U64(&s.skipped_rows) || !r.U64(&s.batches) || !r.U64(&s.bad_rows) ||
      !r.U64(&s.dropped_features) || !r.F64(&s.seconds) || !r.F64(&s.wait_seconds) ||
      !r.F64(&s.compute_seconds) || !r.F64(&s.data_wait_seconds)) {
    return DataLossError("trainer stats: truncated or not a trainer report (" +
                         std::to_string(bytes.size()) + " bytes)");
  }
  std::string_view rest = bytes.substr(bytes.size() - r.remaining());
  ASSIGN_OR_RETURN(s.staleness, CountHistogram::ParseFrom(&rest));
  ASSIGN_OR_RETURN(s.age, CountHistogram::ParseFrom(&rest));
  internal::ByteReader tail(rest);
  if (!tail.Bytes(&m) || !tail.Bytes(&e) || !tail.Bytes(&st) || tail.remaining() != 0) {
    return DataLossError("trainer stats: truncated metrics (" + std::to_string(bytes.size()) +
                         " bytes)");
  }
  ASSIGN_OR_RETURN(s.metrics, ProgressiveMetrics::Parse(m));
  ASSIGN_OR_RETURN(s.eval, BinaryMetrics::Parse(e));
  if (!st.empty()) {
    ASSIGN_OR_RETURN(proto::Manifest::StreamPosition position, PartitionPositions::Parse(st));
    s.stream_topic = position.topic();
    s.stream.MergeFrom(position);
  }
  return s;
}

Status TrainerStats::Merge(const TrainerStats& other) {
  RETURN_IF_ERROR(metrics.Merge(other.metrics));
  RETURN_IF_ERROR(eval.Merge(other.eval));
  staleness.Merge(other.staleness);
  age.Merge(other.age);
  rows += other.rows;
  replayed_rows += other.replayed_rows;
  skipped_rows += other.skipped_rows;
  batches += other.batches;
  bad_rows += other.bad_rows;
  dropped_features += other.dropped_features;
  seconds = std::max(seconds, other.seconds);
  wait_seconds += other.wait_seconds;
  compute_seconds += other.compute_seconds;
  data_wait_seconds += other.data_wait_seconds;
  if (!other.stream.empty()) {
    // Workers read disjoint partitions of one topic.
    if (stream_topic.empty()) stream_topic = other.stream_topic;
    proto::Manifest::StreamPosition position;
    other.stream.ToProto(other.stream_topic, &position);
    stream.MergeFrom(position);
  }
  return OkStatus();
}

// One mini-batch on its way through the pipeline.
struct Trainer::Step {
  ExampleBatch fresh;
  ExampleBatch replay;
  int batch = 0;  // fresh + replayed rows
  std::vector<float> labels;
  std::vector<float> dense;
  std::vector<float> mask;      // B*F: the feature's weight, 0 for an empty slot
  std::vector<uint32_t> slots;  // present slots (indices into B*F)
  UniqueKeys unique;            // over the present slots' ids, in slot order
  Buffer keys;                  // unique.keys
  OpPtr sparse_pull;
  std::vector<OpPtr> dense_pulls;
  SteadyClock::time_point pulls_issued;
  int64_t pull_clock = 0;  // this worker's clock when the pulls were sent
};

Trainer::Trainer(Client& client, models::CtrModel& model, TrainerOptions options)
    : client_(client),
      model_(model),
      options_(std::move(options)),
      fields_(model.options().num_fields),
      emb_dim_(model.options().emb_dim),
      row_dim_(1 + static_cast<size_t>(model.options().emb_dim)),
      window_(options_.window, static_cast<uint32_t>(model.options().dense_dim)) {
  stats_.metrics = ProgressiveMetrics(options_.metrics);
  for (const auto& p : model_.dense_params()) dense_tables_.push_back(p.name);
}

Status Trainer::Prepare(const ExampleBatch& fresh, Step* step) {
  step->replay.Clear();
  step->replay.dense_dim = fresh.dense_dim;
  const size_t n_replay = window_.ReplayCount(fresh.size());
  if (n_replay > 0) window_.SampleReplay(n_replay, &step->replay);
  const size_t b = fresh.size() + step->replay.size();
  const size_t f = static_cast<size_t>(fields_);
  const size_t d = static_cast<size_t>(model_.options().dense_dim);
  if (fresh.dense_dim != d) {
    return InvalidArgumentError("the parser gives " + std::to_string(fresh.dense_dim) +
                                " dense inputs per row but the model expects " + std::to_string(d));
  }
  step->batch = static_cast<int>(b);
  step->labels.resize(b);
  step->dense.resize(b * d);
  step->mask.assign(b * f, 0.0f);
  step->slots.clear();
  std::vector<uint64_t> ids;
  ids.reserve(b * f);
  std::vector<SlottedFeature> features;
  size_t row = 0;
  for (const ExampleBatch* part : std::array<const ExampleBatch*, 2>{&fresh, &step->replay}) {
    for (size_t r = 0; r < part->size(); ++r, ++row) {
      step->labels[row] = part->labels[r];
      if (d > 0) std::copy_n(part->Dense(r).data(), d, step->dense.data() + row * d);
      features.clear();
      stats_.dropped_features += AssignSlots(
          *part, r, options_.slots, std::span<float>(step->mask).subspan(row * f, f), &features);
      for (const SlottedFeature& x : features) {
        step->slots.push_back(static_cast<uint32_t>(row * f + x.slot));
        ids.push_back(x.id);
      }
    }
  }
  step->unique = Unique(ids);
  step->keys = Buffer::CopyOf(std::span<const uint64_t>(step->unique.keys));
  return OkStatus();
}

void Trainer::IssuePulls(Step* step) {
  step->pulls_issued = SteadyClock::now();
  step->pull_clock = client_.clock();
  step->sparse_pull = client_.Pull(options_.sparse_table, step->keys);
  step->dense_pulls.clear();
  for (const std::string& name : dense_tables_)
    step->dense_pulls.push_back(client_.PullDense(name));
}

Status Trainer::Compute(Step* step) {
  const auto wait_start = SteadyClock::now();
  RETURN_IF_ERROR(step->sparse_pull->Wait().WithContext("pull of " + options_.sparse_table));
  for (size_t i = 0; i < step->dense_pulls.size(); ++i) {
    RETURN_IF_ERROR(step->dense_pulls[i]->Wait().WithContext("pull of " + dense_tables_[i]));
  }
  const auto compute_start = SteadyClock::now();
  stats_.wait_seconds += Seconds(compute_start - wait_start);
  if (!step->slots.empty()) {
    stats_.staleness.Add(step->pull_clock - step->sparse_pull->slowest_clock());
  }
  const int64_t bias_read_version =
      step->dense_pulls.empty() ? -1 : step->dense_pulls[0]->version();

  const size_t b = static_cast<size_t>(step->batch), f = static_cast<size_t>(fields_);
  const size_t k = static_cast<size_t>(emb_dim_);
  // Expand the unique rows to the B*F slots: [linear, emb...] per row.
  emb_in_.assign(b * f * k, 0.0f);
  linear_in_.assign(b * f, 0.0f);
  const std::span<const float> pulled = step->sparse_pull->values();
  for (size_t j = 0; j < step->slots.size(); ++j) {
    const size_t slot = step->slots[j];
    const float* src = pulled.data() + step->unique.index[j] * row_dim_;
    linear_in_[slot] = src[0];
    if (k > 0) std::copy_n(src + 1, k, emb_in_.data() + slot * k);
  }
  std::vector<std::span<const float>> params;
  params.reserve(step->dense_pulls.size());
  for (const OpPtr& op : step->dense_pulls) params.push_back(op->values());

  grad_emb_.resize(b * f * k);
  grad_linear_.resize(b * f);
  probs_.resize(b);
  std::vector<Buffer> dense_grads;
  models::ModelGradients grads{.emb = grad_emb_, .linear = grad_linear_, .dense = {}};
  for (const auto& spec : model_.dense_params()) {
    dense_grads.push_back(Buffer::AllocateUninitialized(spec.size() * sizeof(float)));
    grads.dense.push_back(dense_grads.back().MutableAs<float>());
  }
  models::ModelBatch batch{step->batch, emb_in_, linear_in_, step->mask, step->dense, step->labels};
  const bool frozen = options_.freeze_after_rows > 0 && stats_.rows >= options_.freeze_after_rows;
  if (frozen) {
    ASSIGN_OR_RETURN(float loss, model_.Forward(batch, params, {.logits = {}, .probs = probs_}));
    (void)loss;
  } else {
    ASSIGN_OR_RETURN(float loss,
                     model_.ForwardBackward(batch, params, grads, {.logits = {}, .probs = probs_}));
    (void)loss;
  }
  stats_.compute_seconds += Seconds(SteadyClock::now() - compute_start);

  // Test then train: the fresh rows' predictions came from parameters that had
  // not seen them.
  const size_t fresh = step->fresh.size();
  stats_.metrics.AddBatch(std::span<const float>(probs_).first(fresh),
                          std::span<const float>(step->labels).first(fresh));
  if (options_.eval_from_rows > 0) {
    for (size_t r = 0; r < fresh; ++r) {
      if (stats_.rows + r >= options_.eval_from_rows) stats_.eval.Add(probs_[r], step->labels[r]);
    }
  }
  stats_.rows += fresh;
  for (const RowOrigin& origin : step->fresh.origins) stats_.stream.Advance(origin);
  stats_.replayed_rows += step->replay.size();
  ++stats_.batches;

  std::vector<OpPtr> ops;
  if (!frozen) {
    // One summed gradient row per unique id.
    Buffer sparse_grads = Buffer::Allocate(step->unique.keys.size() * row_dim_ * sizeof(float));
    std::span<float> g = sparse_grads.MutableAs<float>();
    for (size_t j = 0; j < step->slots.size(); ++j) {
      const size_t slot = step->slots[j];
      float* dst = g.data() + step->unique.index[j] * row_dim_;
      dst[0] += grad_linear_[slot];
      const float* src = grad_emb_.data() + slot * k;
      for (size_t c = 0; c < k; ++c) dst[1 + c] += src[c];
    }
    if (!step->unique.keys.empty()) {
      ops.push_back(client_.Push(options_.sparse_table, step->keys, std::move(sparse_grads)));
    }
    for (size_t i = 0; i < dense_grads.size(); ++i) {
      ops.push_back(client_.PushDense(dense_tables_[i], std::move(dense_grads[i])));
      if (i == 0) age_pending_.emplace_back(ops.back(), bias_read_version);
    }
  }
  // Clocks also without a staleness bound: the servers then know how far behind
  // the slowest worker is, which is the staleness reported in the metrics.
  ops.push_back(client_.ClockAt(options_.skip_rows + stats_.rows,
                                stats_.stream.empty() ? std::string()
                                                      : stats_.stream.Serialize(stats_.stream_topic)));
  RecordAges(/*wait=*/false);
  // Bound the pushes in flight; their errors surface here.
  push_ops_.insert(push_ops_.end(), ops.begin(), ops.end());
  const size_t per_batch = ops.size();
  while (push_ops_.size() > per_batch * static_cast<size_t>(options_.max_push_inflight)) {
    RETURN_IF_ERROR(push_ops_.front()->Wait().WithContext("push"));
    push_ops_.erase(push_ops_.begin());
  }
  return OkStatus();
}

void Trainer::RecordAges(bool wait) {
  while (!age_pending_.empty()) {
    auto& [op, read_version] = age_pending_.front();
    if (!wait && !op->done()) break;
    // A push queued for its clock's sum (BSP) reports no version: age 0 by design.
    if (op->Wait().ok() && op->version() > 0 && read_version >= 0) {
      stats_.age.Add(op->version() - read_version - 1);
    }
    age_pending_.pop_front();
  }
}

void Trainer::MaybeReport(bool force) {
  const auto now = SteadyClock::now();
  if (!force && now < next_report_) return;
  next_report_ = now + options_.report_interval;
  stats_.seconds = Seconds(now - start_);
  if (options_.stream_ends) {
    for (const auto& [p, end] : options_.stream_ends()) stats_.stream.SeeHighWatermark(p, end);
  }
  std::string payload;
  stats_.AppendTo(&payload);
  client_.ReportMetrics(std::move(payload));
}

StatusOr<TrainerStats> Trainer::Run(ParsedStream& stream) {
  start_ = SteadyClock::now();
  stats_.stream_topic = options_.stream_topic;
  stats_.stream = options_.stream_start;
  client_.SetStartPosition(options_.skip_rows, stats_.stream.empty()
                                                   ? std::string()
                                                   : stats_.stream.Serialize(stats_.stream_topic));
  next_report_ = start_ + options_.report_interval;
  uint64_t taken = 0;  // fresh rows taken from the stream
  // Takes the next fresh batch (nullopt at the end or at max_rows).
  auto next_fresh = [&]() -> StatusOr<std::optional<ExampleBatch>> {
    if (options_.max_rows > 0 && taken >= options_.max_rows) return std::optional<ExampleBatch>();
    const auto wait_start = SteadyClock::now();
    // A quiet live stream (--follow, Kafka): keep reporting, and stop waiting
    // when a recovery asks this worker to roll back.
    while (!stream.WaitReady(options_.report_interval)) {
      if (client_.recovering()) {
        return AbortedError("recovering: stopped waiting for the stream's next rows");
      }
      MaybeReport(/*force=*/true);
    }
    ASSIGN_OR_RETURN(std::optional<ExampleBatch> batch, stream.NextBatch());
    while (batch && stats_.skipped_rows < options_.skip_rows) {
      const size_t skip =
          std::min<uint64_t>(batch->size(), options_.skip_rows - stats_.skipped_rows);
      batch->DropFront(skip);
      stats_.skipped_rows += skip;
      if (!batch->empty()) break;
      ASSIGN_OR_RETURN(batch, stream.NextBatch());
    }
    stats_.data_wait_seconds += Seconds(SteadyClock::now() - wait_start);
    if (batch && options_.max_rows > 0) batch->Truncate(options_.max_rows - taken);
    if (batch) taken += batch->size();
    return batch;
  };
  auto start_step = [&](ExampleBatch fresh) -> StatusOr<std::unique_ptr<Step>> {
    auto step = std::make_unique<Step>();
    step->fresh = std::move(fresh);
    RETURN_IF_ERROR(Prepare(step->fresh, step.get()));
    IssuePulls(step.get());
    return step;
  };

  std::unique_ptr<Step> current;
  // A resumed run (a --resume_from or a rollback) logs when its first
  // mini-batch is trained: the moment the worker trains again.
  bool resumed = options_.skip_rows > 0 || !options_.stream_start.empty();
  SteadyClock::time_point skipped_at = start_;
  {
    ASSIGN_OR_RETURN(std::optional<ExampleBatch> first, next_fresh());
    skipped_at = SteadyClock::now();
    if (first) {
      ASSIGN_OR_RETURN(current, start_step(std::move(*first)));
    }
  }
  // Under a staleness bound a pull must carry the clock of the batch it is for, so
  // it is sent after the previous batch's clock, not ahead of it.
  const bool prefetch = options_.prefetch && client_.view().staleness() < 0;
  while (current != nullptr) {
    std::unique_ptr<Step> next;
    // The next batch's pulls overlap this one's compute when the next batch
    // comes within a report interval; a quiet live stream must not hold back
    // the batch already taken for longer than that.
    const bool prefetched = prefetch && stream.WaitReady(options_.report_interval);
    if (prefetched) {
      ASSIGN_OR_RETURN(std::optional<ExampleBatch> fresh, next_fresh());
      if (fresh) {
        ASSIGN_OR_RETURN(next, start_step(std::move(*fresh)));
      }
    }
    RETURN_IF_ERROR(Compute(current.get()));
    if (resumed) {
      resumed = false;
      LOG(INFO) << "worker " << client_.worker_id() << ": training again: first mini-batch "
                << "trained " << Seconds(SteadyClock::now() - start_) << " s after the start ("
                << stats_.skipped_rows << " rows skipped to the version's position in "
                << Seconds(skipped_at - start_) << " s)";
    }
    window_.Add(current->fresh, SteadyClock::now());
    if (options_.delay_per_batch.count() > 0) {
      std::this_thread::sleep_for(options_.delay_per_batch);  // a simulated straggler
    }
    if (!prefetched) {
      MaybeReport(false);
      ASSIGN_OR_RETURN(std::optional<ExampleBatch> fresh, next_fresh());
      if (fresh) {
        ASSIGN_OR_RETURN(next, start_step(std::move(*fresh)));
      }
    }
    current = std::move(next);
    stats_.bad_rows = stream.bad_rows();
    MaybeReport(false);
  }
  for (const OpPtr& op : push_ops_) RETURN_IF_ERROR(op->Wait().WithContext("push"));
  push_ops_.clear();
  RecordAges(/*wait=*/true);
  stats_.bad_rows = stream.bad_rows();
  stats_.seconds = Seconds(SteadyClock::now() - start_);
  if (stats_.skipped_rows < options_.skip_rows) {
    LOG(WARNING) << "worker " << client_.worker_id() << ": the stream ended after "
                 << stats_.skipped_rows << " rows, but the version resumed from says this worker "
                 << "had consumed " << options_.skip_rows << "; is it the same --data?";
  }
  if (options_.max_rows > 0 && taken >= options_.max_rows) stream.Stop();
  return stats_;
}

}  // namespace eddy::worker
