#include "worker/metrics/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

#include "worker/metrics/internal/wire.h"

namespace eddy::worker {
namespace {

constexpr uint32_t kBinaryMagic = 0x314d4942;       // "BIM1"
constexpr uint32_t kProgressiveMagic = 0x31475250;  // "PRG1"
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

}  // namespace

double RowLogLoss(float p, float label) {
  const double q = std::clamp(static_cast<double>(p), kLogLossEpsilon, 1 - kLogLossEpsilon);
  return IsPositive(label) ? -std::log(q) : -std::log1p(-q);
}

void BinaryMetrics::Add(float p, float label) {
  ++count_;
  sum_p_ += p;
  sum_logloss_ += RowLogLoss(p, label);
  auc_.Add(p, label);
}

void BinaryMetrics::AddBatch(std::span<const float> p, std::span<const float> labels) {
  CHECK_EQ(p.size(), labels.size());
  for (size_t i = 0; i < p.size(); ++i) Add(p[i], labels[i]);
}

Status BinaryMetrics::Merge(const BinaryMetrics& other) {
  RETURN_IF_ERROR(auc_.Merge(other.auc_));
  count_ += other.count_;
  sum_p_ += other.sum_p_;
  sum_logloss_ += other.sum_logloss_;
  return OkStatus();
}

void BinaryMetrics::Clear() {
  count_ = 0;
  sum_p_ = sum_logloss_ = 0;
  auc_.Clear();
}

double BinaryMetrics::LogLoss() const {
  return count_ ? sum_logloss_ / static_cast<double>(count_) : kNaN;
}
double BinaryMetrics::MeanPrediction() const {
  return count_ ? sum_p_ / static_cast<double>(count_) : kNaN;
}
double BinaryMetrics::Ctr() const {
  return count_ ? static_cast<double>(positives()) / static_cast<double>(count_) : kNaN;
}
double BinaryMetrics::Calibration() const { return positives() ? MeanPrediction() / Ctr() : kNaN; }

std::string BinaryMetrics::Summary() const {
  char buf[256];
  std::snprintf(buf, sizeof(buf), "n=%llu ctr=%.4f pred=%.4f calib=%.3f logloss=%.5f auc=%.5f",
                static_cast<unsigned long long>(count_), Ctr(), MeanPrediction(), Calibration(),
                LogLoss(), Auc());
  return buf;
}

void BinaryMetrics::AppendTo(std::string* out) const {
  internal::ByteWriter w(out);
  w.U32(kBinaryMagic);
  w.U64(count_);
  w.F64(sum_p_);
  w.F64(sum_logloss_);
  std::string auc;
  auc_.AppendTo(&auc);
  w.Bytes(auc);
}

StatusOr<BinaryMetrics> BinaryMetrics::Parse(std::string_view bytes) {
  internal::ByteReader r(bytes);
  uint32_t magic = 0;
  uint64_t count = 0;
  double sum_p = 0, sum_logloss = 0;
  std::string_view auc_bytes;
  if (!r.U32(&magic) || magic != kBinaryMagic) return DataLossError("binary metrics: bad magic");
  if (!r.U64(&count) || !r.F64(&sum_p) || !r.F64(&sum_logloss) || !r.Bytes(&auc_bytes)) {
    return DataLossError("binary metrics: truncated");
  }
  if (r.remaining() != 0) return DataLossError("binary metrics: trailing bytes");
  StatusOr<AucAccumulator> auc = AucAccumulator::Parse(auc_bytes);
  if (!auc.ok()) return auc.status().WithContext("binary metrics");
  if (auc->positives() + auc->negatives() != count) {
    return DataLossError("binary metrics: row count does not match AUC histogram");
  }
  BinaryMetrics m(auc->num_bins());
  m.count_ = count;
  m.sum_p_ = sum_p;
  m.sum_logloss_ = sum_logloss;
  m.auc_ = std::move(auc).value();
  return m;
}

ProgressiveMetrics::ProgressiveMetrics(ProgressiveOptions options)
    : options_(options), total_(options.auc_bins) {
  CHECK_GE(options_.window_buckets, 1u);
  CHECK_GE(options_.window_rows, options_.window_buckets);
  CHECK_GE(options_.auc_bins, 1u);
}

uint64_t ProgressiveMetrics::BucketRows() const {
  return (options_.window_rows + options_.window_buckets - 1) / options_.window_buckets;
}

void ProgressiveMetrics::Add(float p, float label) {
  total_.Add(p, label);
  if (buckets_.empty() || buckets_.front().count() >= BucketRows()) {
    if (buckets_.size() == options_.window_buckets) {
      // Reuse the oldest bucket's storage for the new one.
      buckets_.push_front(std::move(buckets_.back()));
      buckets_.pop_back();
      buckets_.front().Clear();
    } else {
      buckets_.emplace_front(options_.auc_bins);
    }
  }
  buckets_.front().Add(p, label);
}

void ProgressiveMetrics::AddBatch(std::span<const float> p, std::span<const float> labels) {
  CHECK_EQ(p.size(), labels.size());
  for (size_t i = 0; i < p.size(); ++i) Add(p[i], labels[i]);
}

Status ProgressiveMetrics::Merge(const ProgressiveMetrics& other) {
  if (other.options_.window_rows != options_.window_rows ||
      other.options_.window_buckets != options_.window_buckets ||
      other.options_.auc_bins != options_.auc_bins) {
    return InvalidArgumentError("ProgressiveMetrics::Merge: options differ");
  }
  RETURN_IF_ERROR(total_.Merge(other.total_));
  for (size_t i = 0; i < other.buckets_.size(); ++i) {
    if (i == buckets_.size()) buckets_.emplace_back(options_.auc_bins);
    RETURN_IF_ERROR(buckets_[i].Merge(other.buckets_[i]));
  }
  return OkStatus();
}

BinaryMetrics ProgressiveMetrics::RecentWindow() const {
  BinaryMetrics window(options_.auc_bins);
  for (const BinaryMetrics& b : buckets_)
    window.Merge(b).IgnoreError();  // same bins by construction
  return window;
}

std::string ProgressiveMetrics::ProgressLine() const {
  const BinaryMetrics window = RecentWindow();
  return "since start: " + total_.Summary() + " | recent: " + window.Summary();
}

void ProgressiveMetrics::AppendTo(std::string* out) const {
  internal::ByteWriter w(out);
  w.U32(kProgressiveMagic);
  w.U64(options_.window_rows);
  w.U32(options_.window_buckets);
  w.U32(options_.auc_bins);
  w.U32(static_cast<uint32_t>(buckets_.size()));
  std::string part;
  total_.AppendTo(&part);
  w.Bytes(part);
  for (const BinaryMetrics& b : buckets_) {
    part.clear();
    b.AppendTo(&part);
    w.Bytes(part);
  }
}

StatusOr<ProgressiveMetrics> ProgressiveMetrics::Parse(std::string_view bytes) {
  internal::ByteReader r(bytes);
  uint32_t magic = 0, num_buckets = 0;
  ProgressiveOptions options;
  if (!r.U32(&magic) || magic != kProgressiveMagic)
    return DataLossError("progressive metrics: bad magic");
  if (!r.U64(&options.window_rows) || !r.U32(&options.window_buckets) ||
      !r.U32(&options.auc_bins) || !r.U32(&num_buckets)) {
    return DataLossError("progressive metrics: truncated header");
  }
  if (options.window_buckets == 0 || options.window_rows < options.window_buckets ||
      options.auc_bins == 0 || num_buckets > options.window_buckets) {
    return DataLossError("progressive metrics: bad options");
  }
  ProgressiveMetrics m(options);
  std::string_view part;
  if (!r.Bytes(&part)) return DataLossError("progressive metrics: truncated");
  ASSIGN_OR_RETURN(m.total_, BinaryMetrics::Parse(part));
  for (uint32_t i = 0; i < num_buckets; ++i) {
    if (!r.Bytes(&part)) return DataLossError("progressive metrics: truncated bucket");
    ASSIGN_OR_RETURN(BinaryMetrics b, BinaryMetrics::Parse(part));
    if (b.auc().num_bins() != options.auc_bins)
      return DataLossError("progressive metrics: bucket bins differ");
    m.buckets_.push_back(std::move(b));
  }
  if (m.total_.auc().num_bins() != options.auc_bins)
    return DataLossError("progressive metrics: bins differ");
  if (r.remaining() != 0) return DataLossError("progressive metrics: trailing bytes");
  return m;
}

}  // namespace eddy::worker
