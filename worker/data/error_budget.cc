#include "worker/data/error_budget.h"

#include <glog/logging.h>

#include <cstdio>

namespace eddy::worker {

ErrorBudget::ErrorBudget(ErrorBudgetOptions options) : options_(std::move(options)) {}

Status ErrorBudget::RecordBad(const Status& error, std::string_view origin, uint64_t line_number) {
  ++rows_;
  ++bad_;
  std::optional<RowError> kind = RowErrorOf(error);
  ++by_kind_[kind ? static_cast<int>(*kind) : kNumRowErrors];
  if (bad_ == 1) first_bad_ = std::string(origin) + ":" + std::to_string(line_number);
  if (bad_ <= static_cast<uint64_t>(options_.log_first)) {
    LOG(WARNING) << "bad row " << origin << ":" << line_number << ": " << error.message()
                 << (bad_ == static_cast<uint64_t>(options_.log_first)
                         ? " (further bad rows are counted, not logged)"
                         : "");
  }
  if (options_.max_bad_rate <= 0) return Exceeded("a bad row with no bad rows tolerated");
  if (rows_ >= options_.min_rows && options_.max_bad_rate < 1 &&
      static_cast<double>(bad_) > options_.max_bad_rate * static_cast<double>(rows_)) {
    return Exceeded("too many bad rows");
  }
  return OkStatus();
}

Status ErrorBudget::Finish() const {
  if (bad_ == 0 || options_.max_bad_rate >= 1) return OkStatus();
  if (bad_ == rows_) return Exceeded("no row could be parsed (wrong data format?)");
  if (rows_ >= options_.min_rows &&
      static_cast<double>(bad_) > options_.max_bad_rate * static_cast<double>(rows_)) {
    return Exceeded("too many bad rows");
  }
  return OkStatus();
}

std::string ErrorBudget::Summary() const {
  char rate[32];
  std::snprintf(rate, sizeof(rate), "%.2f%%",
                rows_ ? 100.0 * static_cast<double>(bad_) / static_cast<double>(rows_) : 0.0);
  std::string s =
      std::to_string(bad_) + " bad of " + std::to_string(rows_) + " rows (" + rate + ")";
  const char* sep = ": ";
  for (int i = 0; i <= kNumRowErrors; ++i) {
    if (by_kind_[i] == 0) continue;
    s += sep;
    s += i < kNumRowErrors ? RowErrorName(static_cast<RowError>(i)) : "other";
    s += " " + std::to_string(by_kind_[i]);
    sep = ", ";
  }
  return s;
}

Status ErrorBudget::Exceeded(std::string_view why) const {
  char limit[32];
  std::snprintf(limit, sizeof(limit), "%g", options_.max_bad_rate);
  return DataLossError(std::string(why) + ": " + Summary() + "; first bad row at " + first_bad_ +
                       "; tolerated rate is " + options_.flag_name + "=" + limit +
                       " (checked after " + std::to_string(options_.min_rows) + " rows); raise " +
                       options_.flag_name + " to skip more bad rows");
}

}  // namespace eddy::worker
