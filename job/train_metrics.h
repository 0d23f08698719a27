// TrainMetrics: the scheduler's Prometheus metrics of a training job (docs/http.md),
// set from what TrainProgress already merged from the workers' reports (rows,
// progressive AUC/logloss, staleness, stream lag and freshness) and from the
// scheduler's version and recovery events.
// Ownership: borrows the registry, which must outlive it.
// Thread-safety: Update/OnVersion/OnRecovery from the scheduler's event-loop
// thread (the callbacks of SchedulerOptions); the registry may be scraped from
// any thread meanwhile (the values are atomics).
#ifndef EDDY_JOB_TRAIN_METRICS_H_
#define EDDY_JOB_TRAIN_METRICS_H_

#include "common/metrics.h"
#include "job/train_progress.h"
#include "scheduler/scheduler_node.h"

namespace eddy::job {

class TrainMetrics {
 public:
  explicit TrainMetrics(MetricsRegistry* registry);
  TrainMetrics(const TrainMetrics&) = delete;
  TrainMetrics& operator=(const TrainMetrics&) = delete;

  // After progress.Update() returned true.
  void Update(const TrainProgress& progress);
  void OnVersion(const scheduler::VersionSummary& version);
  void OnRecovery(const scheduler::RecoveryEvent& event);

 private:
  Counter* rows_;
  Counter* replayed_rows_;
  Counter* bad_rows_;
  Gauge* rows_per_s_;
  Gauge* auc_;
  Gauge* logloss_;
  Gauge* calibration_;
  Gauge* recent_auc_;
  Gauge* recent_logloss_;
  Gauge* staleness_mean_;
  Gauge* staleness_p99_;
  Gauge* stream_lag_;
  Gauge* freshness_;
  Gauge* workers_;
  Gauge* server_rows_;
  Gauge* server_memory_;
  Counter* versions_committed_;
  Counter* versions_failed_;
  Gauge* last_version_;
  Histogram* version_pause_;
  Histogram* version_total_;
  Counter* recoveries_;
  Counter* recoveries_done_;
  Histogram* recovery_seconds_;
};

}  // namespace eddy::job

#endif  // EDDY_JOB_TRAIN_METRICS_H_
