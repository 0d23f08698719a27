// ErrorBudget: counts rows and bad rows (per RowError kind), logs the first few bad
// rows with their file and line, and fails the stream once too many rows are bad.
// Thread-safety: not thread-safe; owned by the thread that parses the stream.
#ifndef EDDY_WORKER_DATA_ERROR_BUDGET_H_
#define EDDY_WORKER_DATA_ERROR_BUDGET_H_

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "worker/data/parser.h"

namespace eddy::worker {

struct ErrorBudgetOptions {
  // Tolerated fraction of bad rows, in [0, 1].
  //  - 0: the first bad row fails the stream.
  //  - in (0, 1): fails as soon as bad/total > max_bad_rate, checked only once
  //    total >= min_rows (so one early bad row does not stop a job).
  //  - 1: never fails on the rate.
  double max_bad_rate = 0.01;
  uint64_t min_rows = 1000;
  // How many bad rows are logged (glog WARNING) with origin and line number.
  int log_first = 10;
  // Named in the error message as the setting to raise.
  std::string flag_name = "--max_bad_row_rate";
};

class ErrorBudget {
 public:
  explicit ErrorBudget(ErrorBudgetOptions options = {});

  // Counts one good row.
  void RecordGood() { ++rows_; }
  // Counts one bad row. `error` is the parser's status (its RowError kind, if
  // any, is counted; others count as kind "other"). Returns an error Status
  // (DataLoss, with counts per kind and the flag to raise) once the budget is
  // exceeded, OK otherwise.
  Status RecordBad(const Status& error, std::string_view origin, uint64_t line_number);
  // At the end of a stream: fails if the rate is exceeded (same min_rows rule)
  // or if rows were read but none parsed while max_bad_rate < 1 (a wrong format).
  Status Finish() const;

  uint64_t rows() const { return rows_; }
  uint64_t bad_rows() const { return bad_; }
  uint64_t bad_rows(RowError kind) const { return by_kind_[static_cast<int>(kind)]; }
  // "12 bad of 1000 rows (1.20%): bad_number 10, too_long 2".
  std::string Summary() const;

 private:
  Status Exceeded(std::string_view why) const;

  const ErrorBudgetOptions options_;
  uint64_t rows_ = 0;  // good + bad
  uint64_t bad_ = 0;
  std::array<uint64_t, kNumRowErrors + 1> by_kind_{};  // last: not a RowError
  std::string first_bad_;                              // "origin:line"
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_DATA_ERROR_BUDGET_H_
