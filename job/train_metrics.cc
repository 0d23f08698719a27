#include "job/train_metrics.h"

#include <cmath>

namespace eddy::job {

TrainMetrics::TrainMetrics(MetricsRegistry* r) {
  rows_ = r->SimpleCounter("eddy_train_rows_total", "Rows trained by every worker.");
  replayed_rows_ = r->SimpleCounter("eddy_train_replayed_rows_total",
                                    "Rows trained again after a recovery rolled back.");
  bad_rows_ = r->SimpleCounter("eddy_train_bad_rows_total", "Input rows that did not parse.");
  rows_per_s_ = r->SimpleGauge("eddy_train_rows_per_second",
                               "Rows per second since the previous progress report.");
  auc_ = r->SimpleGauge("eddy_train_auc",
                        "Progressive-validation AUC since the start (each row scored before "
                        "it is trained on); NaN before any row.");
  logloss_ = r->SimpleGauge("eddy_train_logloss", "Progressive-validation log loss since start.");
  calibration_ = r->SimpleGauge("eddy_train_calibration",
                                "Mean predicted CTR over the observed CTR since start.");
  recent_auc_ = r->SimpleGauge("eddy_train_recent_auc",
                               "Progressive-validation AUC over the recent window of rows.");
  recent_logloss_ = r->SimpleGauge("eddy_train_recent_logloss",
                                   "Progressive-validation log loss over the recent window.");
  staleness_mean_ = r->SimpleGauge("eddy_train_staleness_mean",
                                   "Mean staleness of pulls (clocks behind the slowest worker).");
  staleness_p99_ = r->SimpleGauge("eddy_train_staleness_p99", "99th percentile staleness of pulls.");
  stream_lag_ = r->SimpleGauge("eddy_train_stream_lag_messages",
                               "Kafka messages not yet trained on (0 for file input).");
  freshness_ = r->SimpleGauge("eddy_train_data_freshness_seconds",
                              "Now minus the newest Kafka event trained on; -1: none.");
  workers_ = r->SimpleGauge("eddy_train_workers_reporting", "Workers whose metrics arrived.");
  server_rows_ = r->SimpleGauge("eddy_train_server_sparse_rows",
                                "Sparse rows on the servers at their last heartbeat.");
  server_memory_ = r->SimpleGauge("eddy_train_server_memory_bytes",
                                  "Table memory on the servers at their last heartbeat.");
  versions_committed_ = r->SimpleCounter("eddy_train_versions_committed_total",
                                         "Model versions committed.");
  versions_failed_ = r->SimpleCounter("eddy_train_versions_failed_total",
                                      "Model versions that failed (older ones stay valid).");
  last_version_ = r->SimpleGauge("eddy_train_last_version", "The newest committed model version.");
  version_pause_ = r->AddHistogram("eddy_train_version_pause_seconds",
                                   "Longest server event-loop stall to capture a version.", {},
                                   LatencyBuckets())
                       ->Get({})
                       .get();
  version_total_ = r->AddHistogram("eddy_train_version_duration_seconds",
                                   "Time from a version's request to its commit.", {},
                                   LatencyBuckets())
                       ->Get({})
                       .get();
  recoveries_ = r->SimpleCounter("eddy_train_recoveries_total",
                                 "Recoveries started (a node was lost; rolled back).");
  recoveries_done_ = r->SimpleCounter("eddy_train_recoveries_completed_total",
                                      "Recoveries after which the workers trained again.");
  recovery_seconds_ = r->AddHistogram("eddy_train_recovery_duration_seconds",
                                      "Time from a loss to training again.", {},
                                      {0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300})
                          ->Get({})
                          .get();
}

void TrainMetrics::Update(const TrainProgress& p) {
  const worker::TrainerStats& t = p.total();
  replayed_rows_->SetTotal(static_cast<double>(t.replayed_rows));
  bad_rows_->SetTotal(static_cast<double>(t.bad_rows));
  rows_per_s_->Set(p.recent_rows_per_s());
  const worker::BinaryMetrics& all = t.metrics.SinceStart();
  const worker::BinaryMetrics recent = t.metrics.RecentWindow();
  auc_->Set(all.Auc());
  logloss_->Set(all.LogLoss());
  calibration_->Set(all.Calibration());
  recent_auc_->Set(recent.Auc());
  recent_logloss_->Set(recent.LogLoss());
  staleness_mean_->Set(t.staleness.count() > 0 ? t.staleness.Mean() : 0.0);
  staleness_p99_->Set(t.staleness.count() > 0 ? t.staleness.Quantile(0.99) : 0.0);
  stream_lag_->Set(t.stream.empty() ? 0.0 : static_cast<double>(t.stream.Lag()));
  freshness_->Set(p.freshness_s());
  workers_->Set(p.reporting_workers());
  server_rows_->Set(static_cast<double>(p.servers().sparse_rows()));
  server_memory_->Set(static_cast<double>(p.servers().memory_bytes()));
  // Last: a scrape that sees these rows sees the figures above for them too.
  rows_->SetTotal(static_cast<double>(t.rows));
}

void TrainMetrics::OnVersion(const scheduler::VersionSummary& v) {
  if (!v.ok) {
    versions_failed_->Inc();
    return;
  }
  versions_committed_->Inc();
  last_version_->Set(static_cast<double>(v.version));
  version_pause_->Observe(v.pause_seconds);
  version_total_->Observe(v.total_seconds);
}

void TrainMetrics::OnRecovery(const scheduler::RecoveryEvent& e) {
  if (!e.done) {
    recoveries_->Inc();
    return;
  }
  recoveries_done_->Inc();
  recovery_seconds_->Observe(e.seconds);
}

}  // namespace eddy::job
