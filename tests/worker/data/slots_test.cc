#include "worker/data/slots.h"

#include <gtest/gtest.h>

#include <vector>

namespace eddy::worker {
namespace {

// A batch of one row with the given (id, field, value) features.
ExampleBatch OneRow(const std::vector<uint64_t>& ids, const std::vector<uint32_t>& fields,
                    const std::vector<float>& values) {
  Example e;
  e.ids = ids;
  e.fields = fields;
  e.values = values;
  ExampleBatch b;
  b.Append(e);
  return b;
}

TEST(SlotsTest, ModeFollowsTheFormat) {
  EXPECT_EQ(SlotModeForFormat("criteo"), SlotMode::kByField);
  EXPECT_EQ(SlotModeForFormat("libffm"), SlotMode::kByField);
  EXPECT_EQ(SlotModeForFormat("libsvm"), SlotMode::kInOrder);
}

TEST(SlotsTest, ByFieldPlacesEachFieldOnceAndDropsTheRest) {
  // Field 2 twice (the second is dropped), field 7 beyond F = 4 (dropped),
  // field 0 with weight 0 (skipped: it leaves slot 0 free), then field 0 again.
  const ExampleBatch b =
      OneRow({10, 11, 12, 13, 14, 15}, {2, 2, 7, 0, 0, 3}, {1.0f, 1.0f, 1.0f, 0.0f, 0.5f, 2.0f});
  std::vector<float> mask(4, 0.0f);
  std::vector<SlottedFeature> out;
  EXPECT_EQ(AssignSlots(b, 0, SlotMode::kByField, mask, &out), 2u);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].slot, 2u);
  EXPECT_EQ(out[0].id, 10u);
  EXPECT_EQ(out[1].slot, 0u);
  EXPECT_EQ(out[1].id, 14u);
  EXPECT_EQ(out[2].slot, 3u);
  EXPECT_EQ(out[2].id, 15u);
  EXPECT_EQ(mask, (std::vector<float>{0.5f, 0.0f, 1.0f, 2.0f}));
}

TEST(SlotsTest, InOrderFillsSlotsByPositionAndCountsWhatDoesNotFit) {
  const ExampleBatch b = OneRow({1, 2, 3, 4, 5}, {9, 9, 9, 9, 9}, {1.0f, 0.0f, 3.0f, 4.0f, 5.0f});
  std::vector<float> mask(3, 0.0f);
  std::vector<SlottedFeature> out;
  // A zero weight still takes its position; features 4 and 5 have no slot.
  EXPECT_EQ(AssignSlots(b, 0, SlotMode::kInOrder, mask, &out), 2u);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0].slot, 0u);
  EXPECT_EQ(out[1].slot, 2u);
  EXPECT_EQ(out[1].id, 3u);
  EXPECT_EQ(mask, (std::vector<float>{1.0f, 0.0f, 3.0f}));
}

TEST(SlotsTest, AppendsWithoutClearing) {
  const ExampleBatch b = OneRow({7}, {1}, {1.0f});
  std::vector<float> mask(2, 0.0f);
  std::vector<SlottedFeature> out = {{0, 99}};
  EXPECT_EQ(AssignSlots(b, 0, SlotMode::kByField, mask, &out), 0u);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[1].id, 7u);
}

}  // namespace
}  // namespace eddy::worker
