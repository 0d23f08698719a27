#include "worker/data/read_ahead_source.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <thread>
#include <vector>

namespace eddy::worker {
namespace {

// Lines "row<i>" from origin "p<i / 3>", partition i % 4, then an error or the end.
class CountingSource final : public LineSource {
 public:
  CountingSource(int lines, Status end) : lines_(lines), end_(std::move(end)) {}
  StatusOr<bool> Next(Line* line) override {
    if (i_ == lines_) {
      if (!end_.ok()) return end_;
      return false;
    }
    text_ = "row" + std::to_string(i_);
    origin_ = "p" + std::to_string(i_ / 3);
    line->text = text_;
    line->origin = origin_;
    line->line_number = static_cast<uint64_t>(i_) + 1;
    line->truncated = i_ % 7 == 0;
    line->row_origin = RowOrigin{.partition = i_ % 4, .offset = i_};
    ++i_;
    return true;
  }

 private:
  const int lines_;
  const Status end_;
  int i_ = 0;
  std::string text_, origin_;
};

TEST(ReadAheadSourceTest, KeepsEveryLineInOrderWithItsOriginsAcrossChunks) {
  ReadAheadSource source(std::make_unique<CountingSource>(1000, OkStatus()), /*chunk_lines=*/7,
                         /*chunks=*/2);
  Line line;
  for (int i = 0; i < 1000; ++i) {
    StatusOr<bool> more = source.Next(&line);
    ASSERT_TRUE(more.ok() && *more) << i;
    EXPECT_EQ(line.text, "row" + std::to_string(i));
    EXPECT_EQ(line.origin, "p" + std::to_string(i / 3));
    EXPECT_EQ(line.line_number, static_cast<uint64_t>(i) + 1);
    EXPECT_EQ(line.truncated, i % 7 == 0);
    EXPECT_EQ(line.row_origin.partition, i % 4);
    EXPECT_EQ(line.row_origin.offset, i);
  }
  StatusOr<bool> end = source.Next(&line);
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(*end);
}

TEST(ReadAheadSourceTest, TheInnerErrorComesAfterTheLinesReadBeforeIt) {
  ReadAheadSource source(std::make_unique<CountingSource>(10, DataLossError("broken")), 4, 1);
  Line line;
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(source.Next(&line).value()) << i;
  StatusOr<bool> end = source.Next(&line);
  EXPECT_EQ(end.status().code(), StatusCode::kDataLoss);
}

TEST(ReadAheadSourceTest, RequestStopWakesAReaderWaitingOnAQuietSource) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  ASSERT_EQ(write(fds[1], "a\nb\n", 4), 4);
  {
    ReadAheadSource source(std::make_unique<FdSource>(fds[0], "pipe"), /*chunk_lines=*/1);
    Line line;
    ASSERT_TRUE(source.Next(&line).value());
    EXPECT_EQ(line.text, "a");
    ASSERT_TRUE(source.Next(&line).value());
    EXPECT_EQ(line.text, "b");
    std::thread stopper([&] { source.RequestStop(); });
    StatusOr<bool> more = source.Next(&line);  // the pipe stays open: waits until the stop
    stopper.join();
    ASSERT_TRUE(more.ok());
    EXPECT_FALSE(*more);
  }  // joins the read-ahead thread
  close(fds[0]);
  close(fds[1]);
}

}  // namespace
}  // namespace eddy::worker
