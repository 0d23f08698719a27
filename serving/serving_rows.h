// ServingRows: the compact rows of one sparse table as a serving replica holds
// them: key -> dim floats, no optimizer state. Open addressing with linear
// probing: keys in one array, the values of slot i at [i * dim, (i + 1) * dim)
// of another, so a row costs 8 + 4 * dim bytes per slot and nothing else.
// Erase leaves a tombstone (or an empty slot when the probe run ends there).
//
// Capacity is any number of slots (not a power of two): a hash picks its home
// slot by multiply-high ("fastrange"), as cheap as a mask, so the load can
// stay within [kGrowLoad, kMaxLoad] instead of halving at every doubling —
// memory stays ~1.2-1.3x the payload (keys + values).
//
// Thread-safety: a value, thread-compatible: const members may run
// concurrently; a change needs exclusive access. Copying copies the arrays.
#ifndef EDDY_SERVING_SERVING_ROWS_H_
#define EDDY_SERVING_SERVING_ROWS_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace eddy::serving {

class ServingRows {
 public:
  // Occupied + tombstone slots never exceed kMaxLoad of the capacity; a rehash
  // sizes the table to kGrowLoad (Reserve to kReserveLoad).
  static constexpr double kMaxLoad = 0.85;
  static constexpr double kGrowLoad = 0.78;
  static constexpr double kReserveLoad = 0.8;

  ServingRows() = default;
  explicit ServingRows(uint32_t dim) : dim_(dim) {}

  uint32_t dim() const { return dim_; }
  size_t size() const { return size_; }
  size_t capacity() const { return keys_.size(); }
  size_t tombstones() const { return tombstones_; }

  // The key's dim() values, or an empty span if absent. Valid until the next change.
  std::span<const float> Find(uint64_t key) const;
  // Inserts or replaces `key`. Requires values.size() == dim().
  void Upsert(uint64_t key, std::span<const float> values);
  // Returns whether `key` was present.
  bool Erase(uint64_t key);
  // Makes room for `rows` keys in total without a rehash (at load kReserveLoad).
  void Reserve(size_t rows);
  // Bytes held by the arrays.
  size_t memory_bytes() const;

  // Calls fn(key, values) for every row, in no particular order.
  template <typename Fn>
  void ForEach(Fn&& fn) const {
    for (size_t i = 0; i < keys_.size(); ++i) {
      if (keys_[i] < kTombstone) fn(keys_[i], Slot(i));
    }
    for (int s = 0; s < 2; ++s) {
      if (special_present_[s]) fn(kTombstone + s, SpecialSlot(s));
    }
  }

 private:
  // Slot markers; the two keys equal to them live out of line (special_*).
  static constexpr uint64_t kTombstone = ~uint64_t{0} - 1;
  static constexpr uint64_t kEmpty = ~uint64_t{0};

  size_t Home(uint64_t key) const;
  std::span<const float> Slot(size_t i) const { return {values_.data() + i * dim_, dim_}; }
  std::span<const float> SpecialSlot(int s) const { return {special_values_.data() + s * dim_, dim_}; }
  size_t SpecialCount() const;
  // Rebuilds the table with `slots` slots (dropping tombstones).
  void Rehash(size_t slots);

  uint32_t dim_ = 0;
  size_t size_ = 0;        // rows, special keys included
  size_t tombstones_ = 0;  // tombstone slots
  std::vector<uint64_t> keys_;  // capacity() slots: a key, kEmpty or kTombstone
  std::vector<float> values_;   // capacity() * dim
  std::array<bool, 2> special_present_{false, false};  // keys kTombstone, kEmpty
  std::vector<float> special_values_;                   // 2 * dim once used
};

}  // namespace eddy::serving

#endif  // EDDY_SERVING_SERVING_ROWS_H_
