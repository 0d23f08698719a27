#include <string>

#include "common/table_config.h"
#include "scheduler/scheduler_node.h"

namespace eddy::scheduler {

Status ValidateSchedulerOptions(const SchedulerOptions& o) {
  if (o.num_servers < 1) return InvalidArgumentError("--num_servers must be at least 1");
  if (o.num_workers < 1)
    return InvalidArgumentError(
        "--num_workers must be at least 1 (under mpirun: use more ranks than 1 + --num_servers)");
  if (o.heartbeat_interval.count() <= 0)
    return InvalidArgumentError("--heartbeat_interval_ms must be > 0");
  if (o.node_timeout <= o.heartbeat_interval) {
    return InvalidArgumentError("--node_timeout_ms (" + std::to_string(o.node_timeout.count()) +
                                ") must be larger than --heartbeat_interval_ms (" +
                                std::to_string(o.heartbeat_interval.count()) + "), e.g. 5x");
  }
  if (o.server_shards == 0 || o.server_shards > 65536)
    return InvalidArgumentError("--server_shards must be in [1, 65536]");
  if (o.tables.empty()) return InvalidArgumentError("no tables defined (--tables)");
  if (o.aggregate != "none" && o.aggregate != "sum" && o.aggregate != "mean") {
    return InvalidArgumentError("--aggregate must be none, sum or mean, not '" + o.aggregate + "'");
  }
  if (o.aggregate != "none" && o.staleness != 0) {
    return InvalidArgumentError("--aggregate=" + o.aggregate +
                                " applies each clock's gradients together, so pulls must wait "
                                "for it: use it with --staleness=0");
  }
  if (o.staleness < -1) {
    return InvalidArgumentError("--staleness must be >= 0 (bounded) or -1 (unbounded), not " +
                                std::to_string(o.staleness));
  }
  if (o.on_progress && o.progress_interval.count() <= 0) {
    return InvalidArgumentError("the progress interval must be > 0 ms, not " +
                                std::to_string(o.progress_interval.count()));
  }
  for (const auto& t : o.tables) RETURN_IF_ERROR(ValidateTableConfig(t));
  if (o.model_dir.empty() && (o.snapshot_interval.count() > 0 || o.snapshot_every_rows > 0)) {
    return InvalidArgumentError("--snapshot_every needs --model_dir: where should versions go?");
  }
  if (o.snapshot_interval.count() < 0) {
    return InvalidArgumentError("the snapshot interval must be >= 0");
  }
  if (o.full_every < 1) {
    return InvalidArgumentError("--full_every must be at least 1 (1: every version is full), not " +
                                std::to_string(o.full_every));
  }
  if (o.keep_full_versions < 1) {
    return InvalidArgumentError("--keep_versions must be at least 1, not " +
                                std::to_string(o.keep_full_versions));
  }
  if (o.stream_partitions < 0) {
    return InvalidArgumentError("stream_partitions must be >= 0, not " +
                                std::to_string(o.stream_partitions));
  }
  // A partitioned stream's positions are per partition, dealt again on resume.
  if (o.resume_version > 0 && o.stream_partitions == 0 &&
      static_cast<int>(o.resume_positions.size()) != o.num_workers) {
    return InvalidArgumentError(
        "version " + std::to_string(o.resume_version) + " was cut with " +
        std::to_string(o.resume_positions.size()) +
        " worker(s); resume it with --num_workers=" + std::to_string(o.resume_positions.size()) +
        " (each worker goes on from its own position in its part of the stream)");
  }
  return OkStatus();
}

}  // namespace eddy::scheduler
