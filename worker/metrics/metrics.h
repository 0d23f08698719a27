// Binary-classification metrics for CTR training: counts, logloss, calibration
// and binned AUC, plus progressive ("test then train") validation keeping both
// since-start and recent-window figures. All accumulators merge across workers
// and serialize to bytes for the scheduler.
// Thread-safety: values; not internally synchronized.
#ifndef EDDY_WORKER_METRICS_METRICS_H_
#define EDDY_WORKER_METRICS_METRICS_H_

#include <cstdint>
#include <deque>
#include <span>
#include <string>
#include <string_view>

#include "common/status.h"
#include "worker/metrics/auc.h"

namespace eddy::worker {

// Probabilities are clipped to [kLogLossEpsilon, 1 - kLogLossEpsilon] before
// taking logs, so one confident mistake costs at most -log(1e-7) ~ 16.1.
inline constexpr double kLogLossEpsilon = 1e-7;

// Logloss of one row: -(y log p + (1 - y) log(1 - p)), p clipped, y = IsPositive(label).
double RowLogLoss(float p, float label);

// Sums over a set of rows. Every figure is NaN when undefined (no rows; AUC and
// calibration also need positives and negatives / positives).
class BinaryMetrics {
 public:
  explicit BinaryMetrics(uint32_t auc_bins = AucAccumulator::kDefaultBins) : auc_(auc_bins) {}

  void Add(float p, float label);
  // Sizes must match (CHECKed).
  void AddBatch(std::span<const float> p, std::span<const float> labels);
  // InvalidArgument if the AUC bin counts differ.
  Status Merge(const BinaryMetrics& other);
  void Clear();

  uint64_t count() const { return count_; }
  uint64_t positives() const { return auc_.positives(); }
  double LogLoss() const;         // mean clipped logloss
  double MeanPrediction() const;  // mean p
  double Ctr() const;             // positives / count
  double Calibration() const;     // MeanPrediction / Ctr; 1 is perfect
  double Auc() const { return auc_.Auc(); }
  double AucErrorBound() const { return auc_.ErrorBound(); }
  const AucAccumulator& auc() const { return auc_; }

  // "n=… ctr=… pred=… calib=… logloss=… auc=…".
  std::string Summary() const;

  void AppendTo(std::string* out) const;
  // DataLoss on truncated, trailing or inconsistent bytes.
  static StatusOr<BinaryMetrics> Parse(std::string_view bytes);

  friend bool operator==(const BinaryMetrics&, const BinaryMetrics&) = default;

 private:
  uint64_t count_ = 0;
  double sum_p_ = 0;
  double sum_logloss_ = 0;
  AucAccumulator auc_;
};

struct ProgressiveOptions {
  // The recent window covers the last `window_rows` rows to within one bucket:
  // it holds between window_rows * (1 - 1/window_buckets) and window_rows rows.
  uint64_t window_rows = 1'000'000;
  uint32_t window_buckets = 8;
  uint32_t auc_bins = AucAccumulator::kDefaultBins;
};

// Progressive validation: call Add with the model's prediction for each row
// *before* training on it. Keeps since-start metrics and a recent window made
// of a ring of buckets (the newest one filling up).
class ProgressiveMetrics {
 public:
  // Requires window_rows >= window_buckets >= 1 and auc_bins >= 1 (CHECKed).
  explicit ProgressiveMetrics(ProgressiveOptions options = {});

  void Add(float p, float label);
  void AddBatch(std::span<const float> p, std::span<const float> labels);

  // Adds `other`'s rows: since-start sums add up; window buckets are merged by
  // age (newest with newest), so the merged window is the union of both
  // windows. InvalidArgument if the options differ.
  Status Merge(const ProgressiveMetrics& other);

  const BinaryMetrics& SinceStart() const { return total_; }
  BinaryMetrics RecentWindow() const;
  const ProgressiveOptions& options() const { return options_; }

  // One progress line: "since start: … | recent …: …".
  std::string ProgressLine() const;

  void AppendTo(std::string* out) const;
  static StatusOr<ProgressiveMetrics> Parse(std::string_view bytes);

 private:
  uint64_t BucketRows() const;

  ProgressiveOptions options_;
  BinaryMetrics total_;
  std::deque<BinaryMetrics> buckets_;  // front = newest (filling); size <= window_buckets
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_METRICS_METRICS_H_
