// EmbeddingTable's versioning side: export and import of every row, the rows
// changed since an epoch, eviction (backward-shift deletion) with tombstones.
#include <sys/mman.h>

#include <algorithm>
#include <bit>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "common/partition.h"
#include "server/embedding_table.h"
#include "server/embedding_table_shard.h"

namespace eddy::server {

using table_internal::SlotIndex;
using table_internal::TombstoneRun;

void EmbeddingTable::Export(std::vector<uint64_t>* keys, std::vector<float>* weights,
                            std::vector<float>* state, ThreadPool* pool) const {
  const size_t sf = state_floats();
  // Every shard locked at once: a consistent copy even with requests running.
  std::vector<std::unique_lock<std::mutex>> locks;
  locks.reserve(num_shards_);
  std::vector<size_t> first(num_shards_ + 1, keys->size());
  for (uint32_t s = 0; s < num_shards_; ++s) {
    locks.emplace_back(shards_[s].mu);
    first[s + 1] = first[s] + shards_[s].num_rows.load(std::memory_order_relaxed);
  }
  const size_t base = keys->size(), n = first[num_shards_] - base;
  keys->resize(base + n);
  const size_t wbase = weights->size(), sbase = state->size();
  weights->resize(wbase + n * dim_);
  state->resize(sbase + n * sf);
  auto copy_shard = [&](size_t s) {
    const Shard& shard = shards_[s];
    size_t at = first[s] - base;
    for (size_t i = 0; i <= shard.mask; ++i) {
      const Slot& slot = shard.slots[i];
      if (slot.epoch == 0) continue;
      const float* row = RowOf(shard, slot.row);
      (*keys)[base + at] = slot.key;
      std::memcpy(weights->data() + wbase + at * dim_, row, dim_ * sizeof(float));
      if (sf > 0) std::memcpy(state->data() + sbase + at * sf, row + dim_, sf * sizeof(float));
      ++at;
    }
  };
  if (pool != nullptr && n >= 4096) {
    pool->ParallelFor(num_shards_, copy_shard);
  } else {
    for (size_t s = 0; s < num_shards_; ++s) copy_shard(s);
  }
}

namespace {

// Keys between the prefetch of a key's index slot and source row, and their use.
constexpr size_t kImportPrefetch = 16;
// Slabs of rows (see Reserve) are whole multiples of this.
constexpr size_t kSlabUnit = size_t{2} << 20;
// Per-thread scratch of Import is kept between calls up to this many keys.
constexpr size_t kMaxCachedImportKeys = 1 << 18;

// An import's keys grouped by shard: shard s's keys are at positions
// [offsets[s], offsets[s + 1]) of `positions`, in call order.
struct ImportGroups {
  std::vector<uint32_t> shard_of;
  std::vector<uint32_t> positions;
  std::vector<uint32_t> offsets;
};

template <int kForWrite>
inline void PrefetchBytes(const void* p, size_t bytes) {
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  for (uintptr_t line = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{63}; line < end; line += 64)
    __builtin_prefetch(reinterpret_cast<const void*>(line), kForWrite, 3);
}

}  // namespace

Status EmbeddingTable::Import(std::span<const uint64_t> keys, std::span<const float> weights,
                              std::span<const float> state) {
  const size_t sf = state_floats();
  if (weights.size() != keys.size() * dim_) {
    return InvalidArgumentError("table '" + config_.name() + "': " + std::to_string(keys.size()) +
                                " keys need " + std::to_string(keys.size() * dim_) +
                                " weights, got " + std::to_string(weights.size()));
  }
  if (!state.empty() && state.size() != keys.size() * sf) {
    return InvalidArgumentError("table '" + config_.name() + "': " + std::to_string(keys.size()) +
                                " keys need " + std::to_string(keys.size() * sf) +
                                " optimizer state floats, got " + std::to_string(state.size()));
  }
  const size_t n = keys.size();
  if (n == 0) return OkStatus();
  if (n > UINT32_MAX) {
    return InvalidArgumentError("table '" + config_.name() + "': import of " + std::to_string(n) +
                                " keys at once (split it)");
  }
  // Counting sort of the keys by shard, stable (call order within a shard).
  thread_local ImportGroups cached;
  ImportGroups uncached;
  ImportGroups& g = n <= kMaxCachedImportKeys ? cached : uncached;
  g.shard_of.resize(n);
  g.positions.resize(n);
  g.offsets.assign(num_shards_ + 1, 0);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t s = ShardOfHash(MixKey(keys[i]), num_shards_);
    g.shard_of[i] = s;
    ++g.offsets[s + 1];
  }
  for (uint32_t s = 0; s < num_shards_; ++s) g.offsets[s + 1] += g.offsets[s];
  {
    std::vector<uint32_t> cursor(g.offsets.begin(), g.offsets.end() - 1);
    for (size_t i = 0; i < n; ++i) g.positions[cursor[g.shard_of[i]]++] = static_cast<uint32_t>(i);
  }
  // Shards are locked one at a time, from a shard that depends on the keys:
  // concurrent imports start in different places and rarely wait for each other.
  const uint32_t first = g.shard_of[0];
  for (uint32_t k = 0; k < num_shards_; ++k) {
    const uint32_t s = (first + k) % num_shards_;
    const uint32_t begin = g.offsets[s], count = g.offsets[s + 1] - begin;
    if (count == 0) continue;
    Shard& shard = shards_[s];
    std::lock_guard lock(shard.mu);
    ImportIntoShard(shard, &g.positions[begin], count, keys.data(), weights.data(),
                    state.empty() ? nullptr : state.data());
  }
  return OkStatus();
}

void EmbeddingTable::ImportIntoShard(Shard& shard, const uint32_t* positions, size_t n,
                                     const uint64_t* keys, const float* weights,
                                     const float* state) {
  const size_t dim = dim_, sf = state_floats();
  const uint32_t epoch = epoch_.load(std::memory_order_relaxed);
  auto look_ahead = [&](size_t j) {
    const size_t p = positions[j];
    __builtin_prefetch(&shard.slots[SlotIndex(MixKey(keys[p]), shard.mask)], 0, 3);
    PrefetchBytes<0>(weights + p * dim, dim * sizeof(float));
    if (state != nullptr) PrefetchBytes<0>(state + p * sf, sf * sizeof(float));
  };
  for (size_t j = 0; j < std::min(n, kImportPrefetch); ++j) look_ahead(j);
  for (size_t j = 0; j < n; ++j) {
    if (j + kImportPrefetch < n) look_ahead(j + kImportPrefetch);
    const size_t p = positions[j];
    const uint64_t key = keys[p], hash = MixKey(key);
    Slot* slot = Find(shard, key, hash);
    if (slot == nullptr) {
      slot = Insert(shard, key, hash, epoch, /*initialize=*/false);
    } else {
      slot->epoch = epoch;
    }
    float* row = RowOf(shard, slot->row);
    std::memcpy(row, weights + p * dim, dim * sizeof(float));
    if (state == nullptr) {
      optimizer_->InitState(row, row + dim, dim);
    } else {
      std::memcpy(row + dim, state + p * sf, sf * sizeof(float));
    }
  }
  shard.num_rows.store(shard.rows, std::memory_order_relaxed);
}

size_t EmbeddingTable::Remove(std::span<const uint64_t> keys) {
  size_t removed = 0;
  for (uint64_t key : keys) {
    const uint64_t hash = MixKey(key);
    Shard& shard = shards_[ShardOfHash(hash, num_shards_)];
    std::lock_guard lock(shard.mu);
    Slot* slot = Find(shard, key, hash);
    if (slot == nullptr) continue;
    Erase(shard, static_cast<size_t>(slot - shard.slots.get()));
    shard.num_rows.store(shard.rows, std::memory_order_relaxed);
    ++removed;
  }
  return removed;
}

void EmbeddingTable::Clear() {
  for (uint32_t s = 0; s < num_shards_; ++s) {
    std::lock_guard lock(shards_[s].mu);
    ResetShard(shards_[s]);
  }
}

void EmbeddingTable::Reserve(size_t rows) {
  const size_t per_shard = rows / num_shards_;
  // Hash-spread counts differ from the mean by a few square roots of it.
  const size_t target = per_shard + per_shard / 16 + 64;
  const size_t capacity = std::bit_ceil(target / 3 * 4 + 4);
  // Rows of an empty shard: a slab (whole 2 MiB) for the mean count (the rest,
  // if any, goes to ordinary chunks), faulted in by one system call rather than
  // one page fault per 4 KiB. Not madvised for transparent huge pages: with the
  // usual defrag setting that makes the faults wait for memory compaction,
  // which cost seconds per load on a fragmented machine.
  const size_t slab = per_shard * RowBytes() / kSlabUnit * kSlabUnit;
  for (uint32_t s = 0; s < num_shards_; ++s) {
    Shard& shard = shards_[s];
    std::lock_guard lock(shard.mu);
    if (capacity > shard.mask + 1) Rehash(shard, capacity);
    if (slab == 0 || shard.rows > 0 || !shard.chunks.empty() || shard.slab_left > 0) continue;
    void* p = std::aligned_alloc(kSlabUnit, slab);
    if (p == nullptr) continue;  // ordinary chunks then
#ifdef MADV_POPULATE_WRITE
    ::madvise(p, slab, MADV_POPULATE_WRITE);
#endif
    shard.blocks.emplace_back(p);
    shard.slab_next = static_cast<std::byte*>(p);
    shard.slab_left = slab;
    shard.bytes.fetch_add(slab + sizeof(void*), std::memory_order_relaxed);
  }
}

void EmbeddingTable::ForEachRow(const std::function<void(uint64_t key, const float* w)>& fn) const {
  for (uint32_t s = 0; s < num_shards_; ++s) {
    const Shard& shard = shards_[s];
    std::lock_guard lock(shard.mu);
    for (size_t i = 0; i <= shard.mask; ++i) {
      const Slot& slot = shard.slots[i];
      if (slot.epoch != 0) fn(slot.key, RowOf(shard, slot.row));
    }
  }
}

uint32_t EmbeddingTable::AdvanceEpoch() {
  const uint32_t previous = epoch_.fetch_add(1, std::memory_order_relaxed);
  CHECK_NE(previous, UINT32_MAX) << "epoch overflow in table '" << config_.name() << "'";
  return previous + 1;
}

void EmbeddingTable::ExportSince(uint32_t since_epoch, std::vector<uint64_t>* keys,
                                 std::vector<float>* weights, std::vector<float>* state,
                                 std::vector<uint64_t>* tombstones) const {
  const size_t sf = state_floats();
  std::vector<uint64_t> gone;
  for (uint32_t s = 0; s < num_shards_; ++s) {
    const Shard& shard = shards_[s];
    std::lock_guard lock(shard.mu);
    for (size_t i = 0; i <= shard.mask; ++i) {
      const Slot& slot = shard.slots[i];
      if (slot.epoch == 0 || slot.epoch < since_epoch) continue;
      const float* row = RowOf(shard, slot.row);
      keys->push_back(slot.key);
      weights->insert(weights->end(), row, row + dim_);
      state->insert(state->end(), row + dim_, row + dim_ + sf);
    }
    // Runs are in ascending epochs: the wanted ones are a suffix.
    gone.clear();
    for (auto run = std::partition_point(
             shard.tombstones.begin(), shard.tombstones.end(),
             [since_epoch](const TombstoneRun& r) { return r.epoch < since_epoch; });
         run != shard.tombstones.end(); ++run) {
      for (uint64_t key : run->keys) {
        if (Find(shard, key, MixKey(key)) == nullptr) gone.push_back(key);
      }
    }
    std::sort(gone.begin(), gone.end());
    gone.erase(std::unique(gone.begin(), gone.end()), gone.end());
    tombstones->insert(tombstones->end(), gone.begin(), gone.end());
  }
}

void EmbeddingTable::Erase(Shard& shard, size_t i) {
  const size_t mask = shard.mask;
  // Free the row: link it into the free list through its first 4 bytes.
  const uint32_t id = shard.slots[i].row;
  std::memcpy(RowOf(shard, id), &shard.free_head, sizeof(uint32_t));
  shard.free_head = id;
  --shard.rows;
  // Backward shift: move later slots of the probe run into the hole when their
  // home position does not lie after the hole (cyclically), so that every key
  // stays reachable from its home without gaps; no deleted markers remain.
  for (size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
    const Slot& slot = shard.slots[j];
    if (slot.epoch == 0) break;
    const size_t home = SlotIndex(MixKey(slot.key), mask);
    if (((j - home) & mask) >= ((j - i) & mask)) {
      shard.slots[i] = slot;
      i = j;
    }
  }
  shard.slots[i] = Slot{};
}

size_t EmbeddingTable::EvictStale(uint32_t older_than_epoch) {
  size_t evicted = 0;
  for (uint32_t s = 0; s < num_shards_; ++s) {
    Shard& shard = shards_[s];
    std::lock_guard lock(shard.mu);
    const uint32_t epoch = epoch_.load(std::memory_order_relaxed);
    std::vector<uint64_t> keys;
    // After an erase the slot is examined again: backward shift may have moved
    // a later slot into it. Slots only move towards the hole, so a slot not yet
    // examined never moves before position i (slots that wrap around from the
    // start of the array were examined and kept already).
    for (size_t i = 0; i <= shard.mask;) {
      const Slot& slot = shard.slots[i];
      if (slot.epoch != 0 && slot.epoch < older_than_epoch) {
        keys.push_back(slot.key);
        Erase(shard, i);
      } else {
        ++i;
      }
    }
    if (keys.empty()) continue;
    evicted += keys.size();
    shard.num_rows.store(shard.rows, std::memory_order_relaxed);
    if (!shard.tombstones.empty() && shard.tombstones.back().epoch == epoch) {
      auto& last = shard.tombstones.back().keys;
      last.insert(last.end(), keys.begin(), keys.end());
    } else {
      keys.shrink_to_fit();
      shard.tombstones.push_back(TombstoneRun{epoch, std::move(keys)});
    }
    UpdateTombstoneBytes(shard);
  }
  return evicted;
}

void EmbeddingTable::DropTombstonesBefore(uint32_t epoch) {
  for (uint32_t s = 0; s < num_shards_; ++s) {
    Shard& shard = shards_[s];
    std::lock_guard lock(shard.mu);
    auto end = std::partition_point(shard.tombstones.begin(), shard.tombstones.end(),
                                    [epoch](const TombstoneRun& r) { return r.epoch < epoch; });
    if (end == shard.tombstones.begin()) continue;
    shard.tombstones.erase(shard.tombstones.begin(), end);
    if (shard.tombstones.empty()) shard.tombstones.shrink_to_fit();
    UpdateTombstoneBytes(shard);
  }
}

size_t EmbeddingTable::num_tombstones() const {
  size_t n = 0;
  for (uint32_t s = 0; s < num_shards_; ++s) {
    const Shard& shard = shards_[s];
    std::lock_guard lock(shard.mu);
    for (const TombstoneRun& run : shard.tombstones) n += run.keys.size();
  }
  return n;
}

void EmbeddingTable::UpdateTombstoneBytes(Shard& shard) {
  size_t bytes = shard.tombstones.capacity() * sizeof(TombstoneRun);
  for (const TombstoneRun& run : shard.tombstones) bytes += run.keys.capacity() * sizeof(uint64_t);
  shard.bytes.fetch_add(bytes - shard.tombstone_bytes, std::memory_order_relaxed);
  shard.tombstone_bytes = bytes;
}

}  // namespace eddy::server
