#include "worker/metrics/auc.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include "worker/metrics/internal/wire.h"

namespace eddy::worker {
namespace {

constexpr uint32_t kAucMagic = 0x31435541;  // "AUC1"
constexpr uint32_t kMaxBins = 1u << 24;

}  // namespace

double ExactAuc(std::span<const float> scores, std::span<const float> labels) {
  CHECK_EQ(scores.size(), labels.size());
  std::vector<std::pair<float, bool>> rows(scores.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    // NaN has no order: it ranks below every score (a strict weak order for sort).
    const float s = std::isnan(scores[i]) ? -std::numeric_limits<float>::infinity() : scores[i];
    rows[i] = {s, IsPositive(labels[i])};
  }
  std::sort(rows.begin(), rows.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  // Walk groups of equal scores in ascending order: each positive beats every
  // negative below its group and ties with the negatives inside it.
  double wins = 0;  // exact up to 2^53 (pairs of up to ~9.5e7 rows per class)
  uint64_t neg_below = 0, pos_total = 0;
  size_t i = 0;
  while (i < rows.size()) {
    size_t j = i;
    uint64_t pos = 0, neg = 0;
    while (j < rows.size() && rows[j].first == rows[i].first) {
      (rows[j].second ? pos : neg)++;
      ++j;
    }
    wins += static_cast<double>(pos) *
            (static_cast<double>(neg_below) + 0.5 * static_cast<double>(neg));
    neg_below += neg;
    pos_total += pos;
    i = j;
  }
  if (pos_total == 0 || neg_below == 0) return std::numeric_limits<double>::quiet_NaN();
  return wins / (static_cast<double>(pos_total) * static_cast<double>(neg_below));
}

AucAccumulator::AucAccumulator(uint32_t num_bins) : pos_(num_bins, 0), neg_(num_bins, 0) {
  CHECK_GE(num_bins, 1u);
}

uint32_t AucAccumulator::BinOf(float score) const {
  const uint32_t n = num_bins();
  // logit(p) computed in double; p <= 0 or p >= 1 (and NaN) go to the ends.
  const double p = score;
  if (!(p > 0)) return 0;
  if (p >= 1) return n - 1;
  const double logit = std::log(p) - std::log1p(-p);
  const double x = (logit + kLogitRange) / (2 * kLogitRange) * n;
  if (x <= 0) return 0;
  if (x >= n) return n - 1;
  return static_cast<uint32_t>(x);
}

void AucAccumulator::Add(float score, float label) {
  const uint32_t b = BinOf(score);
  if (IsPositive(label)) {
    ++pos_[b];
    ++positives_;
  } else {
    ++neg_[b];
    ++negatives_;
  }
}

void AucAccumulator::AddBatch(std::span<const float> scores, std::span<const float> labels) {
  CHECK_EQ(scores.size(), labels.size());
  for (size_t i = 0; i < scores.size(); ++i) Add(scores[i], labels[i]);
}

Status AucAccumulator::Merge(const AucAccumulator& other) {
  if (other.num_bins() != num_bins()) {
    return InvalidArgumentError("AucAccumulator::Merge: " + std::to_string(other.num_bins()) +
                                " bins vs " + std::to_string(num_bins()));
  }
  for (size_t b = 0; b < pos_.size(); ++b) {
    pos_[b] += other.pos_[b];
    neg_[b] += other.neg_[b];
  }
  positives_ += other.positives_;
  negatives_ += other.negatives_;
  return OkStatus();
}

void AucAccumulator::Clear() {
  std::fill(pos_.begin(), pos_.end(), 0);
  std::fill(neg_.begin(), neg_.end(), 0);
  positives_ = negatives_ = 0;
}

double AucAccumulator::Auc() const {
  if (positives_ == 0 || negatives_ == 0) return std::numeric_limits<double>::quiet_NaN();
  double wins = 0;
  double neg_below = 0;
  for (size_t b = 0; b < pos_.size(); ++b) {
    const double p = static_cast<double>(pos_[b]), n = static_cast<double>(neg_[b]);
    wins += p * (neg_below + 0.5 * n);
    neg_below += n;
  }
  return wins / (static_cast<double>(positives_) * static_cast<double>(negatives_));
}

double AucAccumulator::ErrorBound() const {
  if (positives_ == 0 || negatives_ == 0) return std::numeric_limits<double>::quiet_NaN();
  double same_bin = 0;
  for (size_t b = 0; b < pos_.size(); ++b) {
    same_bin += static_cast<double>(pos_[b]) * static_cast<double>(neg_[b]);
  }
  return same_bin / (2.0 * static_cast<double>(positives_) * static_cast<double>(negatives_));
}

void AucAccumulator::AppendTo(std::string* out) const {
  internal::ByteWriter w(out);
  w.U32(kAucMagic);
  w.U32(num_bins());
  // Sparse: only non-empty bins, as (index, pos, neg).
  uint32_t nonempty = 0;
  for (size_t b = 0; b < pos_.size(); ++b) nonempty += (pos_[b] | neg_[b]) != 0;
  w.U32(nonempty);
  for (uint32_t b = 0; b < num_bins(); ++b) {
    if ((pos_[b] | neg_[b]) == 0) continue;
    w.U32(b);
    w.U64(pos_[b]);
    w.U64(neg_[b]);
  }
}

StatusOr<AucAccumulator> AucAccumulator::Parse(std::string_view bytes) {
  internal::ByteReader r(bytes);
  uint32_t magic = 0, bins = 0, nonempty = 0;
  if (!r.U32(&magic) || magic != kAucMagic) return DataLossError("AUC accumulator: bad magic");
  if (!r.U32(&bins) || bins == 0 || bins > kMaxBins)
    return DataLossError("AUC accumulator: bad bin count");
  if (!r.U32(&nonempty) || nonempty > bins)
    return DataLossError("AUC accumulator: bad non-empty count");
  if (r.remaining() != static_cast<size_t>(nonempty) * 20) {
    return DataLossError("AUC accumulator: expected " + std::to_string(nonempty * 20ull) +
                         " bin bytes, got " + std::to_string(r.remaining()));
  }
  AucAccumulator acc(bins);
  int64_t last = -1;
  for (uint32_t i = 0; i < nonempty; ++i) {
    uint32_t b = 0;
    uint64_t p = 0, n = 0;
    if (!r.U32(&b) || !r.U64(&p) || !r.U64(&n)) return DataLossError("AUC accumulator: truncated");
    if (b >= bins || static_cast<int64_t>(b) <= last)
      return DataLossError("AUC accumulator: bin index out of order");
    last = b;
    acc.pos_[b] = p;
    acc.neg_[b] = n;
    acc.positives_ += p;
    acc.negatives_ += n;
  }
  return acc;
}

}  // namespace eddy::worker
