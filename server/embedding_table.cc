#include "server/embedding_table.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/partition.h"
#include "common/table_config.h"
#include "server/embedding_table_shard.h"

namespace eddy::server {
namespace {

using table_internal::FreeDeleter;
using table_internal::kCacheLine;
using table_internal::kNoRow;
using table_internal::SlotIndex;

constexpr size_t kInitialSlots = 16;  // per shard; a power of two
// Keys between the prefetch of a key's index slot and its lookup, and between
// the lookup (which prefetches the row) and the row's use. Random accesses to a
// large table need many cache misses in flight to use the memory bandwidth.
constexpr size_t kPrefetchDistance = 32;
// A request is split into tasks for the pool only from this many keys on: waking
// a pool thread and waiting for it costs tens of microseconds.
constexpr size_t kMinKeysForPool = 4096;
// Tasks per pool thread (the pool hands them out dynamically, which evens out
// late wake-ups), each of at least kMinKeysPerTask keys.
constexpr size_t kTasksPerThread = 4;
constexpr size_t kMinKeysPerTask = 1024;
// Row chunks start at about kFirstChunkBytes and double up to about
// kMaxChunkBytes (at least one row each): small tables stay small, and the unused
// tail of a shard's last chunk is bounded.
constexpr size_t kFirstChunkBytes = 2 << 10;
constexpr size_t kMaxChunkBytes = 64 << 10;
// Per-thread scratch is kept between requests up to this many keys.
constexpr size_t kMaxCachedScratchKeys = 1 << 16;

// Prefetches the cache lines of [p, p + bytes).
template <int kForWrite>
inline void PrefetchRange(const void* p, size_t bytes) {
  uintptr_t line = reinterpret_cast<uintptr_t>(p) & ~uintptr_t{kCacheLine - 1};
  const uintptr_t end = reinterpret_cast<uintptr_t>(p) + bytes;
  for (; line < end; line += kCacheLine)
    __builtin_prefetch(reinterpret_cast<const void*>(line), kForWrite, 3);
}

// Maps the whole pages inside [p, p + bytes) in one system call rather than one
// page fault per page: a bulk import fills a new chunk at once. Best effort.
inline void PrefaultForWrite(void* p, size_t bytes) {
#ifdef MADV_POPULATE_WRITE
  const uintptr_t page = 4096;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(page - 1);
  if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_POPULATE_WRITE);
#else
  (void)p;
  (void)bytes;
#endif
}

// Copies a row of `dim` floats.
inline void CopyRow(float* dst, const float* src, size_t dim) {
  size_t i = 0;
  for (; i + 4 <= dim; i += 4) std::memcpy(dst + i, src + i, 4 * sizeof(float));
  for (; i < dim; ++i) dst[i] = src[i];
}

// A request's keys split by task: task t's keys are at request positions
// positions[offsets[t], offsets[t + 1]), in request order.
struct TaskKeys {
  std::vector<uint32_t> task_of_shard;
  std::vector<uint32_t> task_of_key;  // by request position
  std::vector<uint32_t> positions;
  std::vector<uint32_t> offsets;
  std::vector<uint32_t> cursor;
};

// Per-thread scratch: the row pointers of the keys of one task.
std::vector<float*>& RowScratch(size_t n, std::vector<float*>& uncached) {
  thread_local std::vector<float*> cached;
  std::vector<float*>& rows = n <= kMaxCachedScratchKeys ? cached : uncached;
  if (rows.size() < n) rows.resize(n);
  return rows;
}

}  // namespace

StatusOr<std::unique_ptr<EmbeddingTable>> EmbeddingTable::Create(const proto::TableConfig& config,
                                                                 uint32_t num_shards) {
  RETURN_IF_ERROR(ValidateTableConfig(config));
  if (config.dense()) {
    return InvalidArgumentError("table '" + config.name() +
                                "' is a dense tensor, not a sparse table");
  }
  if (num_shards == 0)
    return InvalidArgumentError("table '" + config.name() + "': num_shards must be >= 1");
  auto optimizer = CreateRowOptimizer(config);
  if (!optimizer.ok()) return optimizer.status().WithContext("table '" + config.name() + "'");
  return std::unique_ptr<EmbeddingTable>(
      new EmbeddingTable(config, num_shards, std::move(optimizer).value()));
}

EmbeddingTable::EmbeddingTable(const proto::TableConfig& config, uint32_t num_shards,
                               std::unique_ptr<Optimizer> optimizer)
    : config_(config),
      dim_(config.dim()),
      num_shards_(num_shards),
      optimizer_(std::move(optimizer)),
      initializer_(Initializer::ForRows(config)),
      admits_all_ids_(!AdmissionEnabled(config.admission())),
      row_floats_(dim_ + optimizer_->StateSize(dim_)),
      first_chunk_rows_(
          std::bit_floor(std::max<size_t>(1, kFirstChunkBytes / (row_floats_ * sizeof(float))))),
      max_chunk_rows_(std::max<size_t>(
          first_chunk_rows_, std::bit_floor(kMaxChunkBytes / (row_floats_ * sizeof(float))))),
      chunk_shift_(static_cast<uint32_t>(std::countr_zero(max_chunk_rows_))),
      shards_(std::make_unique<Shard[]>(num_shards)),
      all_shards_(num_shards) {
  for (uint32_t s = 0; s < num_shards_; ++s) {
    all_shards_[s] = s;
    Shard& shard = shards_[s];
    std::lock_guard lock(shard.mu);
    ResetShard(shard);
  }
}

void EmbeddingTable::ResetShard(Shard& shard) {
  shard.slots.reset(static_cast<Slot*>(std::calloc(kInitialSlots, sizeof(Slot))));
  CHECK(shard.slots != nullptr) << "out of memory";
  shard.mask = kInitialSlots - 1;
  shard.grow_at = kInitialSlots * 3 / 4;
  shard.rows = 0;
  shard.chunks.clear();
  shard.chunks.shrink_to_fit();
  shard.blocks.clear();
  shard.blocks.shrink_to_fit();
  shard.slab_next = nullptr;
  shard.slab_left = 0;
  shard.next_row = 0;
  shard.unused_rows = 0;
  shard.next_chunk_rows = first_chunk_rows_;
  shard.free_head = kNoRow;
  shard.tombstones.clear();
  shard.tombstones.shrink_to_fit();
  shard.tombstone_bytes = 0;
  size_t bytes = kInitialSlots * sizeof(Slot);
  if (!admits_all_ids_) {
    shard.admission = std::make_unique<AdmissionFilter>(config_.admission(), kAdmissionSketchWidth);
    bytes += shard.admission->MemoryBytes();
  }
  shard.num_rows.store(0, std::memory_order_relaxed);
  shard.bytes.store(bytes, std::memory_order_relaxed);
}

EmbeddingTable::~EmbeddingTable() = default;

void EmbeddingTable::Pull(std::span<const uint64_t> keys, float* out, ThreadPool* pool) {
  Run(Op::kPull, keys, nullptr, out, pool);
}

void EmbeddingTable::Push(std::span<const uint64_t> keys, const float* grads, ThreadPool* pool) {
  Run(Op::kPush, keys, grads, nullptr, pool);
}

void EmbeddingTable::PushPull(std::span<const uint64_t> keys, const float* grads, float* out,
                              ThreadPool* pool) {
  Run(Op::kPushPull, keys, grads, out, pool);
}

void EmbeddingTable::Run(Op op, std::span<const uint64_t> keys, const float* grads, float* out,
                         ThreadPool* pool) {
  const size_t n = keys.size();
  if (n == 0) return;
  CHECK_LE(n, size_t{UINT32_MAX}) << "request too large; callers bound the number of keys";
  const size_t threads = pool == nullptr ? 1 : static_cast<size_t>(pool->num_threads());
  const uint32_t tasks =
      threads <= 1 || n < kMinKeysForPool
          ? 1
          : static_cast<uint32_t>(
                std::min({n / kMinKeysPerTask, size_t{num_shards_}, threads * kTasksPerThread}));
  // Task t owns shards [t * num_shards / tasks, (t + 1) * num_shards / tasks).
  auto first_shard = [&](uint32_t t) {
    return static_cast<uint32_t>(uint64_t{t} * num_shards_ / tasks);
  };
  if (tasks == 1) {
    // A small request locks only the shards it touches (so that small requests
    // from several threads run in parallel), a larger one all of them.
    std::vector<uint32_t> touched;
    if (n < num_shards_) {
      for (uint64_t key : keys) touched.push_back(ShardOfHash(MixKey(key), num_shards_));
      std::sort(touched.begin(), touched.end());
      touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    }
    std::vector<float*> uncached;
    std::vector<float*>& rows = RowScratch(n, uncached);
    RunTask(op,
            n < num_shards_ ? std::span<const uint32_t>(touched)
                            : std::span<const uint32_t>(all_shards_),
            nullptr, n, keys.data(), grads, out, rows.data());
    return;
  }

  // Split the keys by task with a stable counting sort: each task then goes
  // through its keys in request order (friendlier to the caches than random
  // order), and duplicates keep their order. Hashes are recomputed later rather
  // than stored, which is cheaper than the extra memory traffic.
  // The split runs inside the parallel loop, done by the first task to start,
  // so that it overlaps the pool threads' wake-up; the other tasks wait for it
  // (spinning: it takes microseconds, and the thread doing it is running).
  thread_local TaskKeys cached;
  TaskKeys uncached;
  TaskKeys& g = n <= kMaxCachedScratchKeys ? cached : uncached;
  auto split = [&] {
    g.task_of_shard.resize(num_shards_);
    for (uint32_t t = 0; t < tasks; ++t) {
      std::fill(g.task_of_shard.begin() + first_shard(t),
                g.task_of_shard.begin() + first_shard(t + 1), t);
    }
    if (g.positions.size() < n) {
      g.task_of_key.resize(n);
      g.positions.resize(n);
    }
    g.offsets.assign(tasks + 1, 0);
    g.cursor.resize(tasks);
    uint32_t* offsets = g.offsets.data();
    for (size_t i = 0; i < n; ++i) {
      const uint32_t t = g.task_of_shard[ShardOfHash(MixKey(keys[i]), num_shards_)];
      g.task_of_key[i] = t;
      ++offsets[t + 1];
    }
    for (uint32_t t = 0; t < tasks; ++t) offsets[t + 1] += offsets[t];
    std::copy(offsets, offsets + tasks, g.cursor.begin());
    for (size_t i = 0; i < n; ++i)
      g.positions[g.cursor[g.task_of_key[i]]++] = static_cast<uint32_t>(i);
  };
  enum : int { kNotStarted, kSplitting, kDone };
  std::atomic<int> split_state{kNotStarted};

  pool->ParallelFor(tasks, [&](size_t t) {
    int state = kNotStarted;
    if (split_state.compare_exchange_strong(state, kSplitting, std::memory_order_acquire)) {
      split();
      split_state.store(kDone, std::memory_order_release);
    } else {
      for (int spins = 0; split_state.load(std::memory_order_acquire) != kDone; ++spins) {
        if (spins > 64) std::this_thread::yield();
      }
    }
    const size_t begin = g.offsets[t], count = g.offsets[t + 1] - begin;
    if (count == 0) return;
    std::vector<float*> uncached_rows;
    std::vector<float*>& rows = RowScratch(count, uncached_rows);
    const uint32_t first = first_shard(static_cast<uint32_t>(t)),
                   last = first_shard(static_cast<uint32_t>(t + 1));
    RunTask(op, std::span<const uint32_t>(all_shards_).subspan(first, last - first),
            &g.positions[begin], count, keys.data(), grads, out, rows.data());
  });
}

void EmbeddingTable::RunTask(Op op, std::span<const uint32_t> shards, const uint32_t* positions,
                             size_t n, const uint64_t* keys, const float* grads, float* out,
                             float** rows) {
  const size_t dim = dim_;
  const Optimizer& opt = *optimizer_;
  auto position = [positions](size_t j) -> size_t {
    return positions == nullptr ? j : positions[j];
  };
  // The shards are locked together, in ascending order (as by every request:
  // no deadlock), and one pipeline runs over all the task's keys.
  struct ShardLocks {
    ShardLocks(Shard* all, std::span<const uint32_t> which) : all(all), which(which) {
      for (uint32_t s : which) all[s].mu.lock();
    }
    ~ShardLocks() {
      for (size_t i = which.size(); i-- > 0;) all[which[i]].mu.unlock();
    }
    Shard* all;
    std::span<const uint32_t> which;
  } locks(shards_.get(), shards);
  // Read under the locks: a request that locks a shard after an AdvanceEpoch
  // call returned and locked it (as a capture does) sees the new epoch.
  const uint32_t epoch = epoch_.load(std::memory_order_relaxed);

  // Pipeline over the task's keys j:
  //   j + kPrefetchDistance: hash the key, prefetch its index slot;
  //   j: look the key up (its slot is in cache by now), prefetch its row;
  //   j - kPrefetchDistance: use the row (in cache by now).
  struct Ahead {
    uint64_t key;
    uint64_t hash;
    Shard* shard;
  };
  constexpr size_t kRing = std::bit_ceil(kPrefetchDistance + 1);
  Ahead ahead[kRing];
  auto look_ahead = [&](size_t j) {
    Ahead& a = ahead[j % kRing];
    a.key = keys[position(j)];
    a.hash = MixKey(a.key);
    a.shard = &shards_[ShardOfHash(a.hash, num_shards_)];
    __builtin_prefetch(&a.shard->slots[SlotIndex(a.hash, a.shard->mask)], 0, 3);
  };
  auto use = [&](size_t j) {
    float* row = rows[j];
    const size_t p = position(j);
    if (row == nullptr) {  // an id not admitted yet: reads as zeros, its push only counts
      if (op == Op::kPull) std::fill_n(out + p * dim, dim, 0.0f);
    } else if (op == Op::kPull) {
      CopyRow(out + p * dim, row, dim);
    } else {
      opt.Apply(row, row + dim, grads + p * dim, dim);
    }
  };
  for (size_t j = 0; j < std::min(n, kPrefetchDistance); ++j) look_ahead(j);
  for (size_t j = 0; j < n; ++j) {
    if (j + kPrefetchDistance < n) look_ahead(j + kPrefetchDistance);
    const Ahead& a = ahead[j % kRing];
    Slot* slot = Find(*a.shard, a.key, a.hash);
    if (slot == nullptr) {
      if (!admits_all_ids_ && (op == Op::kPull || !a.shard->admission->Admit(a.key, a.hash))) {
        rows[j] = nullptr;
        if (j >= kPrefetchDistance) use(j - kPrefetchDistance);
        continue;
      }
      slot = Insert(*a.shard, a.key, a.hash, epoch);
    } else if (op != Op::kPull && slot->epoch != epoch) {
      slot->epoch = epoch;  // written only on change: the slot's line stays clean
    }
    float* row = RowOf(*a.shard, slot->row);
    rows[j] = row;
    if (op == Op::kPull) {
      PrefetchRange<0>(row, dim * sizeof(float));
    } else {
      PrefetchRange<1>(row, row_floats_ * sizeof(float));
      PrefetchRange<0>(grads + position(j) * dim, dim * sizeof(float));
    }
    if (j >= kPrefetchDistance) use(j - kPrefetchDistance);
  }
  for (size_t j = n > kPrefetchDistance ? n - kPrefetchDistance : 0; j < n; ++j) use(j);
  if (op == Op::kPushPull) {
    // The rows are still in cache; a second pass gives every occurrence of a
    // duplicated key the final weights, as Push then Pull would.
    for (size_t j = 0; j < n; ++j) {
      if (rows[j] == nullptr) {
        std::fill_n(out + position(j) * dim, dim, 0.0f);
      } else {
        CopyRow(out + position(j) * dim, rows[j], dim);
      }
    }
  }
}

EmbeddingTable::Slot* EmbeddingTable::Find(const Shard& shard, uint64_t key, uint64_t hash) {
  for (size_t i = SlotIndex(hash, shard.mask);; i = (i + 1) & shard.mask) {
    Slot& slot = shard.slots[i];
    if (slot.epoch == 0) return nullptr;
    if (slot.key == key) return &slot;
  }
}

EmbeddingTable::Slot* EmbeddingTable::Insert(Shard& shard, uint64_t key, uint64_t hash,
                                             uint32_t epoch, bool initialize) {
  if (shard.rows + 1 > shard.grow_at) Grow(shard);
  size_t i = SlotIndex(hash, shard.mask);
  while (shard.slots[i].epoch != 0) i = (i + 1) & shard.mask;
  shard.slots[i] = Slot{key, NewRow(shard, key, initialize), epoch};
  return &shard.slots[i];
}

float* EmbeddingTable::RowOf(const Shard& shard, uint32_t id) const {
  return shard.chunks[id >> chunk_shift_] + (id & (max_chunk_rows_ - 1)) * row_floats_;
}

uint32_t EmbeddingTable::NewRow(Shard& shard, uint64_t key, bool initialize) {
  uint32_t id;
  float* row;
  if (shard.free_head != kNoRow) {
    id = shard.free_head;
    row = RowOf(shard, id);
    std::memcpy(&shard.free_head, row, sizeof(uint32_t));
  } else {
    if (shard.unused_rows == 0) {
      // Chunk c holds ids [c << chunk_shift_, (c << chunk_shift_) + its rows);
      // the last chunk id is left out so that no row id is kNoRow.
      CHECK_LT(shard.chunks.size() + 1, size_t{1} << (32 - chunk_shift_))
          << "too many rows in one shard of table '" << config_.name() << "'";
      const size_t rows = shard.next_chunk_rows;
      const size_t bytes =
          (rows * row_floats_ * sizeof(float) + kCacheLine - 1) / kCacheLine * kCacheLine;
      float* chunk;
      const size_t old_capacity = shard.chunks.capacity() + shard.blocks.capacity();
      if (shard.slab_left >= bytes) {  // counted in shard.bytes with its slab
        chunk = reinterpret_cast<float*>(shard.slab_next);
        shard.slab_next += bytes;
        shard.slab_left -= bytes;
      } else {
        chunk = static_cast<float*>(std::aligned_alloc(kCacheLine, bytes));
        CHECK(chunk != nullptr) << "out of memory allocating " << bytes
                                << " bytes of rows for table '" << config_.name() << "'";
        if (!initialize) PrefaultForWrite(chunk, bytes);
        shard.blocks.emplace_back(chunk);
        shard.bytes.fetch_add(bytes, std::memory_order_relaxed);
      }
      shard.chunks.push_back(chunk);
      shard.bytes.fetch_add(
          (shard.chunks.capacity() + shard.blocks.capacity() - old_capacity) * sizeof(void*),
          std::memory_order_relaxed);
      shard.next_row = static_cast<uint32_t>((shard.chunks.size() - 1) << chunk_shift_);
      shard.unused_rows = rows;
      shard.next_chunk_rows = std::min(rows * 2, max_chunk_rows_);
    }
    id = shard.next_row++;
    --shard.unused_rows;
    row = RowOf(shard, id);
  }
  ++shard.rows;
  shard.num_rows.store(shard.rows, std::memory_order_relaxed);
  if (initialize) {
    initializer_.FillRow(key, row, dim_);
    optimizer_->InitState(row, row + dim_, dim_);
  }
  return id;
}

void EmbeddingTable::Grow(Shard& shard) { Rehash(shard, (shard.mask + 1) * 2); }

void EmbeddingTable::Rehash(Shard& shard, size_t capacity) {
  const size_t mask = capacity - 1;
  std::unique_ptr<Slot[], FreeDeleter> slots(
      static_cast<Slot*>(std::calloc(capacity, sizeof(Slot))));
  CHECK(slots != nullptr) << "out of memory growing the index of table '" << config_.name() << "'";
  for (size_t i = 0; i <= shard.mask; ++i) {
    const Slot& slot = shard.slots[i];
    if (slot.epoch == 0) continue;
    size_t j = SlotIndex(MixKey(slot.key), mask);
    while (slots[j].epoch != 0) j = (j + 1) & mask;
    slots[j] = slot;
  }
  shard.slots = std::move(slots);
  shard.bytes.fetch_add((capacity - (shard.mask + 1)) * sizeof(Slot), std::memory_order_relaxed);
  shard.mask = mask;
  shard.grow_at = capacity / 4 * 3;
}

size_t EmbeddingTable::size() const {
  size_t n = 0;
  for (uint32_t s = 0; s < num_shards_; ++s)
    n += shards_[s].num_rows.load(std::memory_order_relaxed);
  return n;
}

AdmissionStats EmbeddingTable::admission_stats() const {
  AdmissionStats total;
  if (admits_all_ids_) return total;
  for (uint32_t s = 0; s < num_shards_; ++s) {
    std::lock_guard lock(shards_[s].mu);
    const AdmissionStats& a = shards_[s].admission->stats();
    total.admitted += a.admitted;
    total.first_seen += a.first_seen;
    total.pending_pushes += a.pending_pushes;
  }
  return total;
}

size_t EmbeddingTable::MemoryBytes() const {
  size_t bytes = sizeof(*this) + num_shards_ * sizeof(Shard);
  for (uint32_t s = 0; s < num_shards_; ++s)
    bytes += shards_[s].bytes.load(std::memory_order_relaxed);
  return bytes;
}

}  // namespace eddy::server
