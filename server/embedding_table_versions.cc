// EmbeddingTable's versioning side: export and import of every row, the rows
// changed since an epoch, eviction (backward-shift deletion) with tombstones.
#include <algorithm>
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
  for (size_t i = 0; i < keys.size(); ++i) {
    const uint64_t hash = MixKey(keys[i]);
    Shard& shard = shards_[ShardOfHash(hash, num_shards_)];
    std::lock_guard lock(shard.mu);
    const uint32_t epoch = epoch_.load(std::memory_order_relaxed);
    Slot* slot = Find(shard, keys[i], hash);
    if (slot == nullptr) {
      slot = Insert(shard, keys[i], hash, epoch);
    } else {
      slot->epoch = epoch;
    }
    float* row = RowOf(shard, slot->row);
    std::memcpy(row, weights.data() + i * dim_, dim_ * sizeof(float));
    if (state.empty()) {
      optimizer_->InitState(row, row + dim_, dim_);
    } else {
      std::memcpy(row + dim_, state.data() + i * sf, sf * sizeof(float));
    }
  }
  return OkStatus();
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
