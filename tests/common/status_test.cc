#include "common/status.h"

#include <gtest/gtest.h>

#include <memory>
#include <sstream>

namespace eddy {
namespace {

TEST(StatusTest, OkByDefault) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kOk);
  EXPECT_EQ(s.ToString(), "OK");
  EXPECT_TRUE(OkStatus().ok());
}

TEST(StatusTest, ErrorConstructorsSetCodeAndMessage) {
  const std::pair<Status, StatusCode> cases[] = {
      {InvalidArgumentError("m"), StatusCode::kInvalidArgument},
      {NotFoundError("m"), StatusCode::kNotFound},
      {FailedPreconditionError("m"), StatusCode::kFailedPrecondition},
      {OutOfRangeError("m"), StatusCode::kOutOfRange},
      {UnavailableError("m"), StatusCode::kUnavailable},
      {DeadlineExceededError("m"), StatusCode::kDeadlineExceeded},
      {AbortedError("m"), StatusCode::kAborted},
      {DataLossError("m"), StatusCode::kDataLoss},
      {ResourceExhaustedError("m"), StatusCode::kResourceExhausted},
      {InternalError("m"), StatusCode::kInternal},
      {UnimplementedError("m"), StatusCode::kUnimplemented},
      {CancelledError("m"), StatusCode::kCancelled},
  };
  for (const auto& [status, code] : cases) {
    EXPECT_FALSE(status.ok());
    EXPECT_EQ(status.code(), code);
    EXPECT_EQ(status.message(), "m");
    EXPECT_EQ(status.ToString(), std::string(StatusCodeName(code)) + ": m");
  }
  EXPECT_EQ(StatusCodeName(StatusCode::kInvalidArgument), "INVALID_ARGUMENT");
  EXPECT_EQ(StatusCodeName(static_cast<StatusCode>(999)), "UNKNOWN");
}

TEST(StatusTest, WithContextPrefixesErrorsAndKeepsOk) {
  Status s = NotFoundError("no table 'x'").WithContext("server 2");
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "server 2: no table 'x'");
  EXPECT_TRUE(OkStatus().WithContext("ignored").ok());
  EXPECT_EQ(OkStatus().WithContext("ignored").message(), "");
}

TEST(StatusTest, StreamsAsToString) {
  std::ostringstream os;
  os << UnavailableError("peer gone");
  EXPECT_EQ(os.str(), "UNAVAILABLE: peer gone");
}

Status FailIf(bool fail) { return fail ? AbortedError("failed") : OkStatus(); }

Status UsesReturnIfError(bool fail, int* reached) {
  RETURN_IF_ERROR(FailIf(fail));
  ++*reached;
  return OkStatus();
}

TEST(StatusTest, ReturnIfErrorPropagatesOnlyErrors) {
  int reached = 0;
  EXPECT_TRUE(UsesReturnIfError(false, &reached).ok());
  EXPECT_EQ(reached, 1);
  Status s = UsesReturnIfError(true, &reached);
  EXPECT_EQ(s.code(), StatusCode::kAborted);
  EXPECT_EQ(reached, 1);
}

StatusOr<int> Half(int x) {
  if (x % 2) return InvalidArgumentError(std::to_string(x) + " is odd");
  return x / 2;
}

StatusOr<int> Quarter(int x) {
  ASSIGN_OR_RETURN(int h, Half(x));
  ASSIGN_OR_RETURN(int q, Half(h));  // two in one scope: distinct temporaries
  return q;
}

TEST(StatusTest, AssignOrReturn) {
  EXPECT_EQ(Quarter(8).value(), 2);
  EXPECT_EQ(Quarter(6).status().message(), "3 is odd");
  EXPECT_EQ(Quarter(5).status().code(), StatusCode::kInvalidArgument);
}

TEST(StatusTest, StatusOrHoldsValueOrError) {
  StatusOr<std::string> v = std::string("abc");
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, "abc");
  EXPECT_EQ(v->size(), 3u);
  EXPECT_TRUE(v.status().ok());
  StatusOr<std::string> e = NotFoundError("gone");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().message(), "gone");
  // Move-only values move out.
  StatusOr<std::unique_ptr<int>> p = std::make_unique<int>(7);
  std::unique_ptr<int> taken = std::move(p).value();
  EXPECT_EQ(*taken, 7);
}

TEST(StatusDeathTest, ValueOfAnErrorIsABug) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  StatusOr<int> e = InternalError("boom");
  EXPECT_DEATH((void)e.value(), "boom");
  EXPECT_DEATH(StatusOr<int>{OkStatus()}, "OK status");
}

}  // namespace
}  // namespace eddy
