// Key deduplication for a mini-batch: pull once per unique key, push one summed
// gradient per unique key.
// Thread-safety: pure functions over their arguments.
#ifndef EDDY_WORKER_DEDUP_H_
#define EDDY_WORKER_DEDUP_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace eddy::worker {

struct UniqueKeys {
  std::vector<uint64_t> keys;   // distinct keys, in order of first appearance
  std::vector<uint32_t> index;  // index[i]: position in `keys` of input key i
};

// Deduplicates `keys` in O(n) expected time.
UniqueKeys Unique(std::span<const uint64_t> keys);

// Sums `grads` (dim floats per input key) into one row per unique key.
std::vector<float> SumByUnique(const UniqueKeys& unique, std::span<const float> grads, size_t dim);

// Expands values pulled for the unique keys (dim floats each) back to one row
// per input key: out must hold unique.index.size() * dim floats.
void ExpandFromUnique(const UniqueKeys& unique, std::span<const float> unique_values, size_t dim,
                      float* out);

}  // namespace eddy::worker

#endif  // EDDY_WORKER_DEDUP_H_
