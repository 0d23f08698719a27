// SchedulerNode's side of model versions that touches files and sockets: the
// VersionSink its VersionCoordinator calls (begin a version directory, send the
// requests, write the manifest, abort, retention). Event-loop thread only.
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>

#include "model_store/retention.h"
#include "model_store/version_dir.h"
#include "model_store/version_service.h"
#include "model_store/version_writer.h"
#include "scheduler/scheduler_node.h"

namespace eddy::scheduler {
namespace {

// A partitioned stream's lag (messages between the cut and the partitions' ends
// as the workers last saw them) and event-time freshness (now minus the newest
// Kafka timestamp trained), as version metrics.
void AddStreamMetrics(const std::vector<model_store::StreamPosition>& positions,
                      std::map<std::string, double>* metrics) {
  int64_t lag = 0;
  int64_t newest_ms = 0;
  bool partitioned = false;
  for (const model_store::StreamPosition& p : positions) {
    for (const auto& o : p.partitions()) {
      partitioned = true;
      if (o.high_watermark() > o.offset()) lag += o.high_watermark() - o.offset();
      newest_ms = std::max(newest_ms, o.newest_timestamp_ms());
    }
  }
  if (!partitioned) return;
  (*metrics)["stream_lag"] = static_cast<double>(lag);
  if (newest_ms > 0) {
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    (*metrics)["freshness_seconds"] = static_cast<double>(now_ms - newest_ms) / 1000.0;
  }
}

}  // namespace

StatusOr<std::string> SchedulerNode::BeginVersion(uint64_t version, uint64_t parent) {
  ASSIGN_OR_RETURN(
      model_store::VersionWriter writer,
      model_store::VersionWriter::Begin(options_.model_dir, version, parent,
                                        /*serving=*/false, proto::Manifest::ENCODING_FLOAT32));
  writer_.emplace(std::move(writer));
  return writer_->temp_dir();
}

void SchedulerNode::RequestServers(const proto::SnapshotRequest& request) {
  const std::string body = request.SerializeAsString();
  for (const Node& n : nodes_) {
    if (n.role != proto::SERVER) continue;
    Message m{MakeHeader(proto::SNAPSHOT), {}, {}};
    m.header.set_version(static_cast<int64_t>(request.version()));
    m.header.set_payload(body);
    SendMessage(*socket_, m, n.routing_id, /*dont_wait=*/true).IgnoreError();
  }
}

void SchedulerNode::TellWorkers(uint64_t version) {
  for (const Node& n : nodes_) {
    if (n.lost || n.role != proto::WORKER) continue;
    Message m{MakeHeader(proto::SNAPSHOT), {}, {}};
    m.header.set_version(static_cast<int64_t>(version));
    SendMessage(*socket_, m, n.routing_id, /*dont_wait=*/true).IgnoreError();
  }
}

Status SchedulerNode::CommitVersion(uint64_t version,
                                    const std::map<int, proto::SnapshotReport>& reports,
                                    VersionSummary* summary) {
  if (!writer_) return InternalError("no writer for version " + std::to_string(version));
  std::map<std::string, uint32_t> state_floats;
  for (const auto& [id, r] : reports) {
    for (int i = 0; i < r.files_size(); ++i) {
      model_store::WrittenShardFile f{r.files(i), r.file_dense(i), r.file_dims(i),
                                      r.file_state_floats(i), proto::Manifest::ENCODING_FLOAT32};
      RETURN_IF_ERROR(writer_->AddWrittenFile(f));
      state_floats[r.files(i).table()] = r.file_state_floats(i);
    }
  }
  model_store::VersionInfo info;
  for (const proto::TableConfig& t : options_.tables) {
    model_store::TableSchema& schema = info.tables.emplace_back();
    schema.set_name(t.name());
    schema.set_dense(t.dense());
    schema.set_dim(t.dim());
    for (uint64_t d : t.shape()) schema.add_shape(d);
    schema.set_optimizer(t.head().dim() > 0
                             ? t.head().optimizer().kind() + "+" + t.optimizer().kind()
                             : t.optimizer().kind());
    schema.set_state_floats_per_value(state_floats[t.name()]);
  }
  for (const proto::WorkerCut& c : summary->cuts) {
    model_store::StreamPosition& p = info.positions.emplace_back();
    // A partitioned stream's position: topic and partition offsets.
    if (!c.stream_state().empty() && !p.ParseFromString(c.stream_state())) {
      LOG(WARNING) << "version " << summary->version << ": worker " << c.worker()
                   << " sent an unreadable stream position (" << c.stream_state().size()
                   << " bytes); not recorded";
      p.Clear();
    }
    p.set_worker(c.worker());
    p.set_rows_consumed(c.rows_consumed());
  }
  info.metrics = VersionMetrics(*summary);
  AddStreamMetrics(info.positions, &info.metrics);
  info.attributes = options_.version_attributes;
  RETURN_IF_ERROR(writer_->Commit(info));
  summary->dir = writer_->final_dir();
  writer_.reset();
  return OkStatus();
}

std::map<std::string, double> SchedulerNode::VersionMetrics(const VersionSummary& summary) const {
  std::map<std::string, double> metrics;
  if (options_.version_metrics) {
    // A finished worker's final report is newer than its last METRICS.
    std::vector<std::string> latest = latest_metrics();
    for (const Node& n : nodes_) {
      if (n.role == proto::WORKER && n.done && n.id < static_cast<int>(latest.size())) {
        latest[n.id] = n.report;
      }
    }
    metrics = options_.version_metrics(latest);
  }
  metrics["pause_ms"] = summary.pause_seconds * 1e3;
  metrics["cut_window_ms"] = summary.window_seconds * 1e3;
  metrics["write_s"] = summary.write_seconds;
  return metrics;
}

void SchedulerNode::AbortVersion(uint64_t /*version*/) {
  if (writer_) writer_->Abort();
  writer_.reset();
}

void SchedulerNode::ApplyRetention(int keep_full) {
  Status r = model_store::ApplyRetention(options_.model_dir, keep_full);
  if (!r.ok()) LOG(WARNING) << "scheduler: retention: " << r;
  if (version_service_) version_service_->Notify();
}

void SchedulerNode::VersionFinished(const VersionSummary& summary) {
  {
    MutexLock lock(&metrics_mu_);
    ++(summary.ok ? stats_.versions_committed : stats_.versions_failed);
  }
  if (options_.on_version) options_.on_version(summary);
}

}  // namespace eddy::scheduler
