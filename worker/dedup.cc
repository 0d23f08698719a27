#include "worker/dedup.h"

#include <bit>
#include <cstring>

#include "common/partition.h"

namespace eddy::worker {

UniqueKeys Unique(std::span<const uint64_t> keys) {
  UniqueKeys out;
  out.index.resize(keys.size());
  out.keys.reserve(keys.size());
  // Open addressing over slot -> unique position + 1 (0 = empty), load <= 0.5.
  const size_t capacity = std::bit_ceil(std::max<size_t>(16, keys.size() * 2));
  const size_t mask = capacity - 1;
  std::vector<uint32_t> slots(capacity, 0);
  for (size_t i = 0; i < keys.size(); ++i) {
    const uint64_t k = keys[i];
    size_t slot = MixKey(k) & mask;
    while (true) {
      uint32_t s = slots[slot];
      if (s == 0) {
        out.keys.push_back(k);
        slots[slot] = static_cast<uint32_t>(out.keys.size());
        out.index[i] = static_cast<uint32_t>(out.keys.size() - 1);
        break;
      }
      if (out.keys[s - 1] == k) {
        out.index[i] = s - 1;
        break;
      }
      slot = (slot + 1) & mask;
    }
  }
  return out;
}

std::vector<float> SumByUnique(const UniqueKeys& unique, std::span<const float> grads, size_t dim) {
  std::vector<float> sums(unique.keys.size() * dim, 0.0f);
  for (size_t i = 0; i < unique.index.size(); ++i) {
    float* dst = sums.data() + unique.index[i] * dim;
    const float* src = grads.data() + i * dim;
    for (size_t d = 0; d < dim; ++d) dst[d] += src[d];
  }
  return sums;
}

void ExpandFromUnique(const UniqueKeys& unique, std::span<const float> unique_values, size_t dim,
                      float* out) {
  for (size_t i = 0; i < unique.index.size(); ++i) {
    std::memcpy(out + i * dim, unique_values.data() + unique.index[i] * dim, dim * sizeof(float));
  }
}

}  // namespace eddy::worker
