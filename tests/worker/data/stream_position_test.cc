#include "worker/data/stream_position.h"

#include <gtest/gtest.h>

namespace eddy::worker {
namespace {

TEST(PartitionPositionsTest, AdvanceMovesPastWholeAndPartMessages) {
  PartitionPositions p;
  p.Set(3, {.offset = 100, .rows_into_message = 0, .high_watermark = 150});
  // Two of three rows of message 100 (several rows per message), then all of 101.
  p.Advance({.partition = 3, .index = 0, .offset = 100, .timestamp_ms = 5, .high_watermark = 160,
             .last_in_message = false});
  p.Advance({.partition = 3, .index = 1, .offset = 100, .timestamp_ms = 5, .high_watermark = 160,
             .last_in_message = false});
  EXPECT_EQ(p.entries().at(3).offset, 100);
  EXPECT_EQ(p.entries().at(3).rows_into_message, 2u);
  p.Advance({.partition = 3, .index = 2, .offset = 100, .timestamp_ms = 6, .high_watermark = 160});
  p.Advance({.partition = 3, .index = 0, .offset = 101, .timestamp_ms = 4, .high_watermark = 160});
  EXPECT_EQ(p.entries().at(3).offset, 102);
  EXPECT_EQ(p.entries().at(3).rows_into_message, 0u);
  EXPECT_EQ(p.entries().at(3).high_watermark, 160);
  EXPECT_EQ(p.NewestTimestampMs(), 6);  // the newest, not the last
  EXPECT_EQ(p.Lag(), 58u);
  // Rows of files carry no partition: nothing moves.
  p.Advance(RowOrigin{});
  EXPECT_EQ(p.entries().size(), 1u);
}

TEST(PartitionPositionsTest, LagCountsOnlyKnownEndsAndSerializationRoundTrips) {
  PartitionPositions p;
  p.Set(0, {.offset = 10, .high_watermark = 25});
  p.Set(1, {.offset = 7, .high_watermark = -1});  // end not known yet
  p.Set(2, {.offset = 9, .high_watermark = 9});
  EXPECT_EQ(p.Lag(), 15u);
  p.SeeHighWatermark(1, 17);
  p.SeeHighWatermark(2, 3);  // an older end changes nothing
  EXPECT_EQ(p.Lag(), 25u);
  StatusOr<proto::Manifest::StreamPosition> parsed = PartitionPositions::Parse(p.Serialize("t"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(parsed->topic(), "t");
  PartitionPositions q;
  q.MergeFrom(*parsed);
  ASSERT_EQ(q.entries().size(), 3u);
  EXPECT_EQ(q.entries().at(1).offset, 7);
  EXPECT_EQ(q.entries().at(1).high_watermark, 17);
  EXPECT_EQ(q.Lag(), 25u);
}

TEST(PartitionPositionsTest, GarbageAndNegativeOffsetsAreDataLoss) {
  EXPECT_EQ(PartitionPositions::Parse("\xff\xff garbage").status().code(), StatusCode::kDataLoss);
  proto::Manifest::StreamPosition bad;
  bad.add_partitions()->set_offset(-4);
  EXPECT_EQ(PartitionPositions::Parse(bad.SerializeAsString()).status().code(),
            StatusCode::kDataLoss);
}

}  // namespace
}  // namespace eddy::worker
