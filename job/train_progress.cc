#include "job/train_progress.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>

namespace eddy::job {

using worker::BinaryMetrics;
using worker::TrainerStats;
namespace {

std::string Number(double v, const char* format = "%.6g") {
  if (!std::isfinite(v)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

std::string Fixed(double v, int digits) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

// 1234567 -> "1,234,567".
std::string Grouped(uint64_t n) {
  std::string s = std::to_string(n);
  for (int i = static_cast<int>(s.size()) - 3; i > 0; i -= 3) s.insert(i, ",");
  return s;
}

std::string Rate(double rows_per_s) {
  char buf[32];
  if (rows_per_s >= 1e6) {
    std::snprintf(buf, sizeof(buf), "%.2fM", rows_per_s / 1e6);
  } else if (rows_per_s >= 1e3) {
    std::snprintf(buf, sizeof(buf), "%.1fk", rows_per_s / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.0f", rows_per_s);
  }
  return buf;
}

}  // namespace

TrainProgress::TrainProgress(int num_workers, SteadyClock::time_point start)
    : num_workers_(num_workers), start_(start) {}

bool TrainProgress::Update(const std::vector<std::string>& reports, SteadyClock::time_point now) {
  TrainerStats total;
  int reporting = 0;
  for (size_t w = 0; w < reports.size(); ++w) {
    if (reports[w].empty()) continue;
    StatusOr<TrainerStats> stats = TrainerStats::Parse(reports[w]);
    Status merged = stats.ok()
                        ? (reporting == 0 ? (total = *stats, OkStatus()) : total.Merge(*stats))
                        : stats.status();
    if (!merged.ok()) {
      if (bad_reports_++ < 5) LOG(WARNING) << "metrics of worker " << w << " skipped: " << merged;
      continue;
    }
    ++reporting;
  }
  if (reporting == 0) return false;
  total_ = std::move(total);
  reporting_ = reporting;
  elapsed_s_ = std::chrono::duration<double>(now - start_).count();
  const double dt = elapsed_s_ - last_update_s_;
  if (dt > 0 && total_.rows >= last_rows_) {
    recent_rows_per_s_ = static_cast<double>(total_.rows - last_rows_) / dt;
  }
  last_update_s_ = elapsed_s_;
  last_rows_ = total_.rows;
  const int64_t newest_ms = total_.stream.NewestTimestampMs();
  freshness_s_ = -1;
  if (newest_ms > 0) {
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    freshness_s_ = std::max<double>(0, static_cast<double>(now_ms - newest_ms) / 1000.0);
  }
  return true;
}

double TrainProgress::rows_per_s() const {
  return total_.seconds > 0 ? static_cast<double>(total_.rows) / total_.seconds : 0.0;
}

std::string TrainProgress::Line() const {
  const BinaryMetrics& all = total_.metrics.SinceStart();
  const BinaryMetrics recent = total_.metrics.RecentWindow();
  char head[32];
  std::snprintf(head, sizeof(head), "[%6.0fs] ", elapsed_s_);
  std::string line = head + Grouped(total_.rows) + " rows " + Rate(recent_rows_per_s_) +
                     " rows/s | auc " + Fixed(all.Auc(), 4) + " logloss " +
                     Fixed(all.LogLoss(), 5) + " calib " + Fixed(all.Calibration(), 3) +
                     " | recent auc " + Fixed(recent.Auc(), 4) + " logloss " +
                     Fixed(recent.LogLoss(), 5);
  if (total_.staleness.max() > 0) {
    line += " | staleness " + Fixed(total_.staleness.Mean(), 1) + " p99 " +
            Fixed(total_.staleness.Quantile(0.99), 0);
  }
  if (!total_.stream.empty()) {
    line += " | lag " + Grouped(total_.stream.Lag()) + " msgs";
    if (freshness_s_ >= 0) line += " fresh " + Fixed(freshness_s_, 1) + "s";
  }
  if (total_.bad_rows > 0) line += " | bad rows " + Grouped(total_.bad_rows);
  if (servers_.admitted_ids() + servers_.waiting_ids() > 0) {
    line += " | ids admitted " + Grouped(servers_.admitted_ids()) + " waiting ~" +
            Grouped(servers_.waiting_ids());
  }
  if (reporting_ < num_workers_) {
    line += " | " + std::to_string(reporting_) + "/" + std::to_string(num_workers_) + " workers";
  }
  return line;
}

void TrainProgress::SetServers(std::vector<proto::ServerReport> servers) {
  proto::ServerReport sum;
  for (const proto::ServerReport& r : servers) {
    sum.set_sparse_rows(sum.sparse_rows() + r.sparse_rows());
    sum.set_memory_bytes(sum.memory_bytes() + r.memory_bytes());
    sum.set_admitted_ids(sum.admitted_ids() + r.admitted_ids());
    sum.set_waiting_ids(sum.waiting_ids() + r.waiting_ids());
    sum.set_pending_pushes(sum.pending_pushes() + r.pending_pushes());
  }
  servers_ = std::move(sum);
}

std::string TrainProgress::JsonLine(bool final) const {
  const BinaryMetrics& all = total_.metrics.SinceStart();
  const BinaryMetrics recent = total_.metrics.RecentWindow();
  std::string j = "{";
  auto field = [&](const char* name, const std::string& value) {
    if (j.size() > 1) j += ",";
    j += "\"";
    j += name;
    j += "\":" + value;
  };
  field("elapsed_s", Number(elapsed_s_, "%.3f"));
  field("rows", std::to_string(total_.rows));
  field("rows_per_s", Number(recent_rows_per_s_, "%.1f"));
  field("auc", Number(all.Auc()));
  field("logloss", Number(all.LogLoss()));
  field("calibration", Number(all.Calibration()));
  field("ctr", Number(all.Ctr()));
  field("recent_rows", std::to_string(recent.count()));
  field("recent_auc", Number(recent.Auc()));
  field("recent_logloss", Number(recent.LogLoss()));
  field("recent_calibration", Number(recent.Calibration()));
  field("replayed_rows", std::to_string(total_.replayed_rows));
  field("skipped_rows", std::to_string(total_.skipped_rows));
  field("batches", std::to_string(total_.batches));
  field("bad_rows", std::to_string(total_.bad_rows));
  field("dropped_features", std::to_string(total_.dropped_features));
  field("wait_s", Number(total_.wait_seconds, "%.3f"));
  field("compute_s", Number(total_.compute_seconds, "%.3f"));
  field("data_wait_s", Number(total_.data_wait_seconds, "%.3f"));
  if (total_.eval.count() > 0) {
    field("eval_rows", std::to_string(total_.eval.count()));
    field("eval_auc", Number(total_.eval.Auc()));
    field("eval_logloss", Number(total_.eval.LogLoss()));
  }
  field("staleness_mean", Number(total_.staleness.Mean()));
  field("staleness_p99", Number(total_.staleness.Quantile(0.99)));
  field("staleness_max", std::to_string(total_.staleness.max()));
  field("age_mean", Number(total_.age.Mean()));
  field("age_p99", Number(total_.age.Quantile(0.99)));
  field("staleness_histogram", total_.staleness.ToJson());
  field("age_histogram", total_.age.ToJson());
  field("server_rows", std::to_string(servers_.sparse_rows()));
  field("server_memory_bytes", std::to_string(servers_.memory_bytes()));
  field("admitted_ids", std::to_string(servers_.admitted_ids()));
  field("waiting_ids", std::to_string(servers_.waiting_ids()));
  field("pending_pushes", std::to_string(servers_.pending_pushes()));
  if (!total_.stream.empty()) {
    field("stream_lag", std::to_string(total_.stream.Lag()));
    field("freshness_s", freshness_s_ >= 0 ? Number(freshness_s_, "%.3f") : "null");
    std::string parts = "[";
    for (const auto& [p, e] : total_.stream.entries()) {
      if (parts.size() > 1) parts += ",";
      parts += "{\"partition\":" + std::to_string(p) + ",\"offset\":" + std::to_string(e.offset) +
               ",\"high_watermark\":" + std::to_string(e.high_watermark) + ",\"lag\":" +
               std::to_string(e.high_watermark > e.offset ? e.high_watermark - e.offset : 0) + "}";
    }
    field("partitions", parts + "]");
  }
  field("workers", std::to_string(reporting_));
  field("final", final ? "true" : "false");
  return j + "}";
}

std::string TrainProgress::Summary() const {
  const BinaryMetrics& all = total_.metrics.SinceStart();
  const BinaryMetrics recent = total_.metrics.RecentWindow();
  std::string s;
  s += "trained on " + Grouped(total_.rows) + " rows (" + Grouped(total_.replayed_rows) +
       " replayed) in " + Fixed(total_.seconds, 1) + " s by " + std::to_string(reporting_) +
       " worker(s): " + Rate(rows_per_s()) + " rows/s\n";
  if (total_.skipped_rows > 0) {
    s += "resumed: skipped the " + Grouped(total_.skipped_rows) +
         " rows the version resumed from had consumed\n";
  }
  s += "progressive validation, since start: " + all.Summary() + "\n";
  s += "progressive validation, last " + Grouped(recent.count()) + " rows: " + recent.Summary() +
       "\n";
  if (total_.eval.count() > 0) {
    s += "evaluated tail (--eval_from_rows): " + total_.eval.Summary() + "\n";
  }
  if (!total_.stream.empty()) {
    s += "stream " + total_.stream_topic + ": " + std::to_string(total_.stream.entries().size()) +
         " partition(s), lag " + Grouped(total_.stream.Lag()) + " messages";
    if (freshness_s_ >= 0) s += ", newest event trained " + Fixed(freshness_s_, 1) + " s ago";
    s += "\n";
  }
  s += "bad rows skipped: " + Grouped(total_.bad_rows) +
       ", features dropped (no free slot): " + Grouped(total_.dropped_features) + "\n";
  if (servers_.sparse_rows() > 0) {
    s +=
        "sparse rows on the servers (at their last heartbeat): " + Grouped(servers_.sparse_rows()) +
        " (" + Fixed(static_cast<double>(servers_.memory_bytes()) / (1 << 20), 1) + " MiB, " +
        Fixed(static_cast<double>(servers_.memory_bytes()) /
                  static_cast<double>(servers_.sparse_rows()),
              1) +
        " bytes/row)";
    if (servers_.admitted_ids() + servers_.waiting_ids() > 0) {
      s += "; feature admission: " + Grouped(servers_.admitted_ids()) + " ids admitted, ~" +
           Grouped(servers_.waiting_ids()) + " waiting, " + Grouped(servers_.pending_pushes()) +
           " pushes of waiting ids dropped";
    }
    s += "\n";
  }
  if (total_.staleness.count() > 0) {
    s += "staleness of pulls (clocks behind the slowest worker): mean " +
         Fixed(total_.staleness.Mean(), 2) + ", p99 " + Fixed(total_.staleness.Quantile(0.99), 0) +
         ", max " + std::to_string(total_.staleness.max()) + "\n";
  }
  if (total_.age.count() > 0) {
    s += "age of the values a gradient was computed from (updates in between): mean " +
         Fixed(total_.age.Mean(), 2) + ", p99 " + Fixed(total_.age.Quantile(0.99), 0) + ", max " +
         std::to_string(total_.age.max()) + "\n";
  }
  const double busy = total_.wait_seconds + total_.compute_seconds + total_.data_wait_seconds;
  if (busy > 0) {
    s += "worker time: " + Fixed(100 * total_.compute_seconds / busy, 0) + "% model compute, " +
         Fixed(100 * total_.wait_seconds / busy, 0) + "% waiting for pulls, " +
         Fixed(100 * total_.data_wait_seconds / busy, 0) + "% waiting for parsed rows\n";
  }
  return s;
}

}  // namespace eddy::job
