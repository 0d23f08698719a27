// Parsed training examples: one row (Example) and a batch of rows stored as flat
// arrays with offsets (ExampleBatch), the unit the parser thread hands to training.
// Thread-safety: plain values; not synchronised.
#ifndef EDDY_WORKER_DATA_ROW_H_
#define EDDY_WORKER_DATA_ROW_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "common/partition.h"
#include "worker/data/stream_position.h"

namespace eddy::worker {

// The 64-bit feature id of `value` in `field`. Bijective over (field, value) for
// values below 2^32 (all Criteo features), so two such features never share an id.
inline uint64_t FeatureId(uint32_t field, uint64_t value) {
  return MixKey((static_cast<uint64_t>(field) << 32) ^ value);
}

// One parsed row. ids[i] is the feature id of field fields[i] with weight values[i]
// (1 for categorical features); ids, fields and values always have equal sizes.
// dense holds the parser's dense inputs (Criteo: 13, libsvm/libffm: none).
struct Example {
  float label = 0;
  std::vector<uint64_t> ids;
  std::vector<uint32_t> fields;
  std::vector<float> values;
  std::vector<float> dense;

  // Empties the row, keeping capacity (parsers reuse one Example).
  void Clear();
};

// Rows as flat arrays: the sparse features of row r are
// [offsets[r], offsets[r + 1]) in ids / fields / values; its dense inputs are
// dense[r * dense_dim, (r + 1) * dense_dim).
struct ExampleBatch {
  uint32_t dense_dim = 0;
  std::vector<float> labels;
  std::vector<uint32_t> offsets = {0};
  std::vector<uint64_t> ids;
  std::vector<uint32_t> fields;
  std::vector<float> values;
  std::vector<float> dense;
  // One per row when the rows come from a partitioned stream (Kafka), else empty.
  std::vector<RowOrigin> origins;

  size_t size() const { return labels.size(); }
  bool empty() const { return labels.empty(); }
  // Appends a row. Requires example.dense.size() == dense_dim.
  void Append(const Example& example);
  void Clear();
  // Keeps the first `rows` rows (no-op if there are not more).
  void Truncate(size_t rows);
  // Removes the first `rows` rows (all of them if there are not more).
  void DropFront(size_t rows);
  std::span<const uint64_t> Ids(size_t row) const {
    return std::span(ids).subspan(offsets[row], offsets[row + 1] - offsets[row]);
  }
  std::span<const uint32_t> Fields(size_t row) const {
    return std::span(fields).subspan(offsets[row], offsets[row + 1] - offsets[row]);
  }
  std::span<const float> Values(size_t row) const {
    return std::span(values).subspan(offsets[row], offsets[row + 1] - offsets[row]);
  }
  std::span<const float> Dense(size_t row) const {
    return std::span(dense).subspan(row * dense_dim, dense_dim);
  }
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_DATA_ROW_H_
