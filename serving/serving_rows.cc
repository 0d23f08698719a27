#include "serving/serving_rows.h"

#include <glog/logging.h>

#include <algorithm>
#include <cmath>

namespace eddy::serving {
namespace {

// splitmix64's finalizer: feature ids are often structured (field in the high bits).
uint64_t Mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

size_t SlotsFor(size_t rows, double load) {
  return std::max<size_t>(8, static_cast<size_t>(std::ceil(static_cast<double>(rows) / load)));
}

}  // namespace

size_t ServingRows::Home(uint64_t key) const {
  return static_cast<size_t>((static_cast<unsigned __int128>(Mix(key)) * keys_.size()) >> 64);
}

std::span<const float> ServingRows::Find(uint64_t key) const {
  if (key >= kTombstone) {
    const int s = static_cast<int>(key - kTombstone);
    return special_present_[s] ? SpecialSlot(s) : std::span<const float>();
  }
  const size_t n = keys_.size();
  if (n == 0) return {};
  for (size_t i = Home(key);;) {
    const uint64_t k = keys_[i];
    if (k == key) return Slot(i);
    if (k == kEmpty) return {};
    if (++i == n) i = 0;
  }
}

void ServingRows::Upsert(uint64_t key, std::span<const float> values) {
  DCHECK_EQ(values.size(), dim_);
  if (key >= kTombstone) {
    const int s = static_cast<int>(key - kTombstone);
    if (special_values_.empty()) special_values_.assign(2 * size_t{dim_}, 0.0f);
    if (!special_present_[s]) ++size_;
    special_present_[s] = true;
    std::copy(values.begin(), values.end(), special_values_.begin() + s * size_t{dim_});
    return;
  }
  for (int attempt = 0;; ++attempt) {
    const size_t n = keys_.size();
    size_t free = n;  // first tombstone on the probe path, else the empty slot ending it
    if (n > 0) {
      for (size_t i = Home(key);;) {
        const uint64_t k = keys_[i];
        if (k == key) {
          std::copy(values.begin(), values.end(), values_.begin() + i * dim_);
          return;
        }
        if (k == kTombstone && free == n) free = i;
        if (k == kEmpty) {
          if (free == n) free = i;
          break;
        }
        if (++i == n) i = 0;
      }
    }
    const bool reuses_tombstone = free < n && keys_[free] == kTombstone;
    if (n == 0 || (!reuses_tombstone &&
                   static_cast<double>(size_ - SpecialCount() + tombstones_ + 1) > kMaxLoad * n)) {
      DCHECK_EQ(attempt, 0);
      // Grow to kGrowLoad, or rehash in place when tombstones fill the table.
      Rehash(std::max(n, SlotsFor(size_ - SpecialCount() + 1, kGrowLoad)));
      continue;
    }
    if (reuses_tombstone) --tombstones_;
    keys_[free] = key;
    std::copy(values.begin(), values.end(), values_.begin() + free * dim_);
    ++size_;
    return;
  }
}

bool ServingRows::Erase(uint64_t key) {
  if (key >= kTombstone) {
    const int s = static_cast<int>(key - kTombstone);
    if (!special_present_[s]) return false;
    special_present_[s] = false;
    --size_;
    return true;
  }
  const size_t n = keys_.size();
  if (n == 0) return false;
  size_t i = Home(key);
  for (;;) {
    const uint64_t k = keys_[i];
    if (k == key) break;
    if (k == kEmpty) return false;
    if (++i == n) i = 0;
  }
  --size_;
  const size_t next = i + 1 == n ? 0 : i + 1;
  if (keys_[next] != kEmpty) {
    keys_[i] = kTombstone;
    ++tombstones_;
    return true;
  }
  // The probe run ends here: no key's path crosses this slot, nor the
  // tombstones just before it.
  keys_[i] = kEmpty;
  for (size_t j = i == 0 ? n - 1 : i - 1; keys_[j] == kTombstone; j = j == 0 ? n - 1 : j - 1) {
    keys_[j] = kEmpty;
    --tombstones_;
  }
  return true;
}

void ServingRows::Reserve(size_t rows) {
  const size_t want = SlotsFor(rows, kReserveLoad);
  if (want > keys_.size()) Rehash(want);
}

size_t ServingRows::memory_bytes() const {
  return sizeof(*this) + keys_.capacity() * sizeof(uint64_t) +
         (values_.capacity() + special_values_.capacity()) * sizeof(float);
}

size_t ServingRows::SpecialCount() const {
  return static_cast<size_t>(special_present_[0]) + static_cast<size_t>(special_present_[1]);
}

void ServingRows::Rehash(size_t slots) {
  std::vector<uint64_t> keys(slots, kEmpty);
  std::vector<float> values(slots * dim_);
  for (size_t i = 0; i < keys_.size(); ++i) {
    const uint64_t key = keys_[i];
    if (key >= kTombstone) continue;
    size_t j = static_cast<size_t>((static_cast<unsigned __int128>(Mix(key)) * slots) >> 64);
    while (keys[j] != kEmpty) {
      if (++j == slots) j = 0;
    }
    keys[j] = key;
    std::copy_n(values_.begin() + i * dim_, dim_, values.begin() + j * dim_);
  }
  keys_ = std::move(keys);
  values_ = std::move(values);
  tombstones_ = 0;
}

}  // namespace eddy::serving
