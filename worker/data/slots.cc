#include "worker/data/slots.h"

namespace eddy::worker {

SlotMode SlotModeForFormat(std::string_view format) {
  return format == "libsvm" ? SlotMode::kInOrder : SlotMode::kByField;
}

size_t AssignSlots(const ExampleBatch& rows, size_t r, SlotMode mode, std::span<float> mask_row,
                   std::vector<SlottedFeature>* out) {
  const std::span<const uint64_t> ids = rows.Ids(r);
  const std::span<const uint32_t> fields = rows.Fields(r);
  const std::span<const float> values = rows.Values(r);
  const size_t f = mask_row.size();
  size_t dropped = 0;
  size_t next_slot = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    size_t slot;
    if (mode == SlotMode::kByField) {
      slot = fields[i];
      if (slot >= f || mask_row[slot] != 0.0f) {
        ++dropped;
        continue;
      }
    } else {
      if (next_slot >= f) return dropped + (ids.size() - i);
      slot = next_slot++;
    }
    if (values[i] == 0.0f) continue;  // contributes nothing
    mask_row[slot] = values[i];
    out->push_back({static_cast<uint32_t>(slot), ids[i]});
  }
  return dropped;
}

}  // namespace eddy::worker
