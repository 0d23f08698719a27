// ROC AUC: exact (Mann-Whitney with average ranks for ties) and a binned,
// mergeable, serializable accumulator for progress lines across workers.
// Thread-safety: ExactAuc is a pure function; an AucAccumulator is a value
// (not internally synchronized: one writer, or external locking).
#ifndef EDDY_WORKER_METRICS_AUC_H_
#define EDDY_WORKER_METRICS_AUC_H_

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace eddy::worker {

// A label counts as positive when label >= 0.5.
inline bool IsPositive(float label) { return label >= 0.5f; }

// Exact ROC AUC of (scores[i], labels[i]) in O(n log n): the probability that a
// random positive scores above a random negative, tied scores counting 1/2.
// Requires scores.size() == labels.size() (CHECKed: a caller bug).
// Returns NaN when there is no positive or no negative (AUC is undefined).
// A NaN score ranks as -infinity (the AucAccumulator puts it in bin 0 too).
double ExactAuc(std::span<const float> scores, std::span<const float> labels);

// Streaming AUC over a fixed histogram of scores per label. Scores are
// probabilities; bins are uniform in logit space over [-kLogitRange,
// kLogitRange] (scores outside land in the end bins), so resolution is
// relative: a bin spans a factor exp(2 * kLogitRange / num_bins) in odds.
//
// Error bound: pairs in different bins are ordered exactly as their scores, and
// pairs in the same bin are counted as ties (1/2). Hence
//   |Auc() - ExactAuc(same rows)| <= ErrorBound()
//     = sum_b pos_b * neg_b / (2 * P * N),
// computed from the histogram itself. With the default 4096 bins and scores
// spread over a few percent of CTR this is typically < 1e-3.
class AucAccumulator {
 public:
  static constexpr double kLogitRange = 12.0;
  static constexpr uint32_t kDefaultBins = 4096;

  // Requires num_bins >= 1 (CHECKed).
  explicit AucAccumulator(uint32_t num_bins = kDefaultBins);

  void Add(float score, float label);
  // Adds the same-weight rows of `scores`/`labels` (sizes must match).
  void AddBatch(std::span<const float> scores, std::span<const float> labels);
  // Adds `other`'s rows. Returns InvalidArgument if the bin counts differ.
  Status Merge(const AucAccumulator& other);
  void Clear();

  // Binned AUC; NaN when there is no positive or no negative.
  double Auc() const;
  // Upper bound on |Auc() - exact AUC| (see class comment); NaN like Auc().
  double ErrorBound() const;

  uint64_t positives() const { return positives_; }
  uint64_t negatives() const { return negatives_; }
  uint32_t num_bins() const { return static_cast<uint32_t>(pos_.size()); }
  uint32_t BinOf(float score) const;

  // Appends a self-describing byte encoding (little-endian) to `out`.
  void AppendTo(std::string* out) const;
  // Parses bytes produced by AppendTo; DataLoss on truncated, trailing or
  // inconsistent bytes.
  static StatusOr<AucAccumulator> Parse(std::string_view bytes);

  friend bool operator==(const AucAccumulator&, const AucAccumulator&) = default;

 private:
  std::vector<uint64_t> pos_;
  std::vector<uint64_t> neg_;
  uint64_t positives_ = 0;
  uint64_t negatives_ = 0;
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_METRICS_AUC_H_
