#include "worker/data/error_budget.h"

#include <gtest/gtest.h>

namespace eddy::worker {
namespace {

Status Bad(RowError kind) { return RowErrorStatus(kind, "detail"); }

TEST(ErrorBudgetTest, CountsRowsAndBadRowsPerKind) {
  ErrorBudget budget;
  for (int i = 0; i < 10; ++i) budget.RecordGood();
  EXPECT_TRUE(budget.RecordBad(Bad(RowError::kBadNumber), "a.tsv", 3).ok());
  EXPECT_TRUE(budget.RecordBad(Bad(RowError::kBadNumber), "a.tsv", 4).ok());
  EXPECT_TRUE(budget.RecordBad(Bad(RowError::kTooLong), "b.tsv", 1).ok());
  EXPECT_TRUE(budget.RecordBad(InternalError("not a row error"), "b.tsv", 2).ok());
  EXPECT_EQ(budget.rows(), 14u);
  EXPECT_EQ(budget.bad_rows(), 4u);
  EXPECT_EQ(budget.bad_rows(RowError::kBadNumber), 2u);
  EXPECT_EQ(budget.bad_rows(RowError::kTooLong), 1u);
  EXPECT_EQ(budget.bad_rows(RowError::kBinary), 0u);
  EXPECT_EQ(budget.Summary(), "4 bad of 14 rows (28.57%): bad_number 2, too_long 1, other 1");
  // Below min_rows the rate is not enforced, even at the end.
  EXPECT_TRUE(budget.Finish().ok());
}

TEST(ErrorBudgetTest, LogsOnlyTheFirstBadRowsAndKeepsCounting) {
  ErrorBudgetOptions options;
  options.log_first = 3;
  options.max_bad_rate = 1;
  ErrorBudget budget(options);
  for (int i = 0; i < 100; ++i)
    EXPECT_TRUE(budget.RecordBad(Bad(RowError::kBinary), "x", i + 1).ok());
  EXPECT_EQ(budget.bad_rows(RowError::kBinary), 100u);
  EXPECT_TRUE(budget.Finish().ok());  // rate 1 tolerates everything
}

TEST(ErrorBudgetTest, RateIsEnforcedOnlyAfterMinRows) {
  ErrorBudgetOptions options;
  options.max_bad_rate = 0.1;
  options.min_rows = 100;
  ErrorBudget budget(options);
  // An early bad row does not stop the stream.
  EXPECT_TRUE(budget.RecordBad(Bad(RowError::kBadLabel), "f", 1).ok());
  for (int i = 0; i < 89; ++i) budget.RecordGood();
  for (int i = 0; i < 9; ++i)
    EXPECT_TRUE(budget.RecordBad(Bad(RowError::kBadLabel), "f", 91 + i).ok());
  // 10 of 99 bad: not yet checked. The 11th bad row makes 11 of 100 > 10%.
  Status s = budget.RecordBad(Bad(RowError::kWrongColumnCount), "f", 100);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_NE(s.message().find("11 bad of 100 rows"), std::string::npos) << s;
  EXPECT_NE(s.message().find("wrong_column_count 1, bad_label 10"), std::string::npos) << s;
  EXPECT_NE(s.message().find("--max_bad_row_rate"), std::string::npos) << s;
  EXPECT_NE(s.message().find("first bad row at f:1"), std::string::npos) << s;
  EXPECT_FALSE(budget.Finish().ok());
}

TEST(ErrorBudgetTest, ExactlyTheRateIsTolerated) {
  ErrorBudgetOptions options;
  options.max_bad_rate = 0.1;
  options.min_rows = 10;
  ErrorBudget budget(options);
  for (int i = 0; i < 9; ++i) budget.RecordGood();
  EXPECT_TRUE(budget.RecordBad(Bad(RowError::kBadNumber), "f", 10).ok());  // 1 of 10
  EXPECT_TRUE(budget.Finish().ok());
}

TEST(ErrorBudgetTest, ZeroRateFailsOnTheFirstBadRow) {
  ErrorBudgetOptions options;
  options.max_bad_rate = 0;
  options.flag_name = "--tolerance";
  ErrorBudget budget(options);
  budget.RecordGood();
  Status s = budget.RecordBad(Bad(RowError::kBinary), "f", 2);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("--tolerance"), std::string::npos) << s;
}

TEST(ErrorBudgetTest, FinishFailsWhenNoRowParsed) {
  ErrorBudget budget;  // min_rows 1000 is not reached
  for (int i = 0; i < 5; ++i)
    EXPECT_TRUE(budget.RecordBad(Bad(RowError::kWrongColumnCount), "f", i + 1).ok());
  Status s = budget.Finish();
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("wrong data format"), std::string::npos) << s;
  EXPECT_TRUE(ErrorBudget().Finish().ok());  // an empty stream is fine
}

}  // namespace
}  // namespace eddy::worker
