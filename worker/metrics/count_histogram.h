// CountHistogram: a histogram of small non-negative integers (staleness in clocks,
// age in versions), exact up to kExact - 1 with one overflow bucket, plus the sum
// and the maximum; merges across workers and serializes for the scheduler.
// Thread-safety: a value; not internally synchronized.
#ifndef EDDY_WORKER_METRICS_COUNT_HISTOGRAM_H_
#define EDDY_WORKER_METRICS_COUNT_HISTOGRAM_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace eddy::worker {

class CountHistogram {
 public:
  static constexpr int kExact = 256;  // values >= kExact share the last bucket

  void Add(int64_t value);  // negative values count as 0
  void Merge(const CountHistogram& other);

  uint64_t count() const { return count_; }
  uint64_t max() const { return max_; }
  double Mean() const;  // NaN when empty
  // The smallest v with at least q of the values <= v; kExact if it falls in the
  // overflow bucket (then see max()); NaN when empty. Requires 0 < q <= 1.
  double Quantile(double q) const;
  // The non-empty buckets as a JSON object, value -> count, e.g. {"0":12,"3":1};
  // the overflow bucket is keyed ">=kExact".
  std::string ToJson() const;

  void AppendTo(std::string* out) const;
  // DataLoss on truncated or inconsistent bytes; consumes exactly its own bytes
  // from the front of *bytes.
  static StatusOr<CountHistogram> ParseFrom(std::string_view* bytes);

  friend bool operator==(const CountHistogram&, const CountHistogram&) = default;

 private:
  std::array<uint64_t, kExact + 1> buckets_{};
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t max_ = 0;
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_METRICS_COUNT_HISTOGRAM_H_
