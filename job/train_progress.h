// TrainProgress: the scheduler's view of a training job. It merges the workers'
// latest TrainerStats into job-wide figures and renders them as a progress line,
// a JSON-lines record (for plots) and a final summary.
// Thread-safety: not thread-safe; used by the scheduler's event-loop thread.
#ifndef EDDY_JOB_TRAIN_PROGRESS_H_
#define EDDY_JOB_TRAIN_PROGRESS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/net.h"
#include "common/status.h"
#include "worker/trainer.h"

namespace eddy::job {

class TrainProgress {
 public:
  explicit TrainProgress(int num_workers, SteadyClock::time_point start = SteadyClock::now());

  // Merges the workers' latest reports (TrainerStats bytes by worker id; empty =
  // none yet) as seen at `now`. A report that does not parse is skipped and
  // counted in bad_reports(). Returns false if no worker has reported yet.
  bool Update(const std::vector<std::string>& reports, SteadyClock::time_point now);

  // The servers' latest reports (sparse rows, memory, feature admission).
  void SetServers(std::vector<proto::ServerReport> servers);

  // The merged stats of the last Update().
  const worker::TrainerStats& total() const { return total_; }
  // Rows per second since the previous Update() (since start for the first).
  double recent_rows_per_s() const { return recent_rows_per_s_; }
  // Rows per second over the job: rows / the slowest worker's training time.
  double rows_per_s() const;
  int reporting_workers() const { return reporting_; }
  // Now minus the newest Kafka timestamp trained on at the last Update(); -1: none.
  double freshness_s() const { return freshness_s_; }
  // The servers' reports of the last SetServers(), summed.
  const proto::ServerReport& servers() const { return servers_; }
  uint64_t bad_reports() const { return bad_reports_; }

  // "[   12s] 1,234,567 rows  98.7k rows/s | auc 0.7712 logloss 0.41234 calib 1.012 |
  //  recent auc … | bad rows 0".
  std::string Line() const;
  // One JSON object (no newline): elapsed_s, rows, rows_per_s, auc, logloss,
  // calibration, ctr, recent_* and counters; NaN becomes null.
  std::string JsonLine(bool final) const;
  // Multi-line summary for the end of the job.
  std::string Summary() const;

 private:
  const int num_workers_;
  const SteadyClock::time_point start_;
  double elapsed_s_ = 0;
  double last_update_s_ = 0;
  uint64_t last_rows_ = 0;
  double recent_rows_per_s_ = 0;
  int reporting_ = 0;
  uint64_t bad_reports_ = 0;
  double freshness_s_ = -1;  // now - newest Kafka timestamp trained; -1: none
  worker::TrainerStats total_;
  proto::ServerReport servers_;  // summed over the servers
};

}  // namespace eddy::job

#endif  // EDDY_JOB_TRAIN_PROGRESS_H_
