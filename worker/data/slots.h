// Feature slots: how a parsed row's features map to a model's F input slots.
// The one mapping shared by training (worker/trainer.cc) and serving
// (serving/loaded_model.cc), so the two can never read a row differently.
// Thread-safety: free functions over caller-owned data; reentrant.
#ifndef EDDY_WORKER_DATA_SLOTS_H_
#define EDDY_WORKER_DATA_SLOTS_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "worker/data/row.h"

namespace eddy::worker {

// How a row's features map to the model's F slots.
enum class SlotMode {
  kByField,  // slot = feature field (Criteo, libffm); a second feature of a field, or a field >= F,
             // is dropped (counted)
  kInOrder,  // slot = position in the row (libsvm); features beyond F are dropped (counted)
};

// The slot mode of a row format: kInOrder for "libsvm", kByField otherwise.
SlotMode SlotModeForFormat(std::string_view format);

// One feature placed in a slot.
struct SlottedFeature {
  uint32_t slot;  // in [0, F)
  uint64_t id;
};

// Places row `r` of `rows` into `num_fields` slots: writes each placed
// feature's value (its weight) to mask_row[slot] and appends (slot, id) to
// *out, in feature order. A feature whose weight is 0 is skipped (it
// contributes nothing) but keeps its slot. Requires mask_row.size() ==
// num_fields and all zeros on entry. Returns the number of features dropped
// because they had no free slot.
size_t AssignSlots(const ExampleBatch& rows, size_t r, SlotMode mode, std::span<float> mask_row,
                   std::vector<SlottedFeature>* out);

}  // namespace eddy::worker

#endif  // EDDY_WORKER_DATA_SLOTS_H_
