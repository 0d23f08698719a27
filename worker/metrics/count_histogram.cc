#include "worker/metrics/count_histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "worker/metrics/internal/wire.h"

namespace eddy::worker {

void CountHistogram::Add(int64_t value) {
  const uint64_t v = value < 0 ? 0 : static_cast<uint64_t>(value);
  ++buckets_[std::min<uint64_t>(v, kExact)];
  ++count_;
  sum_ += v;
  max_ = std::max(max_, v);
}

void CountHistogram::Merge(const CountHistogram& other) {
  for (size_t i = 0; i < buckets_.size(); ++i) buckets_[i] += other.buckets_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  max_ = std::max(max_, other.max_);
}

double CountHistogram::Mean() const {
  return count_ == 0 ? std::numeric_limits<double>::quiet_NaN()
                     : static_cast<double>(sum_) / static_cast<double>(count_);
}

double CountHistogram::Quantile(double q) const {
  if (count_ == 0) return std::numeric_limits<double>::quiet_NaN();
  const double need = std::ceil(q * static_cast<double>(count_));
  uint64_t seen = 0;
  for (size_t i = 0; i < buckets_.size(); ++i) {
    seen += buckets_[i];
    if (static_cast<double>(seen) >= need) return static_cast<double>(i);
  }
  return kExact;
}

std::string CountHistogram::ToJson() const {
  std::string json = "{";
  for (size_t i = 0; i < buckets_.size(); ++i) {
    if (buckets_[i] == 0) continue;
    if (json.size() > 1) json += ",";
    json += "\"" + (i == kExact ? ">=" + std::to_string(kExact) : std::to_string(i)) +
            "\":" + std::to_string(buckets_[i]);
  }
  return json + "}";
}

void CountHistogram::AppendTo(std::string* out) const {
  internal::ByteWriter w(out);
  w.U32(kExact);
  for (uint64_t b : buckets_) w.U64(b);
  w.U64(sum_);
  w.U64(max_);
}

StatusOr<CountHistogram> CountHistogram::ParseFrom(std::string_view* bytes) {
  internal::ByteReader r(*bytes);
  CountHistogram h;
  uint32_t exact = 0;
  if (!r.U32(&exact) || exact != kExact) return DataLossError("count histogram: bad header");
  for (uint64_t& b : h.buckets_) {
    if (!r.U64(&b)) return DataLossError("count histogram: truncated");
    h.count_ += b;
  }
  if (!r.U64(&h.sum_) || !r.U64(&h.max_)) return DataLossError("count histogram: truncated");
  if (h.count_ == 0 && (h.sum_ != 0 || h.max_ != 0)) {
    return DataLossError("count histogram: sum or max without values");
  }
  bytes->remove_prefix(bytes->size() - r.remaining());
  return h;
}

}  // namespace eddy::worker
