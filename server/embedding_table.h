// EmbeddingTable: one server's part of a sparse table. Exact 64-bit keys (no
// collisions; every uint64 value is a valid key), rows created on first pull or
// push with the table's initializer, optimizer state stored next to each row.
// Rows carry the epoch of their last change, which gives delta exports; stale
// rows can be evicted (leaving tombstones for the next delta).
// Thread-safety: keys are split over internal shards, each with its own mutex;
// every method may be called concurrently from any number of threads.
#ifndef EDDY_SERVER_EMBEDDING_TABLE_H_
#define EDDY_SERVER_EMBEDDING_TABLE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "common/proto/eddy.pb.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "server/admission.h"
#include "server/initializer.h"
#include "server/optimizer.h"

namespace eddy::server {

// A key belongs to shard eddy::ShardOfHash(eddy::MixKey(key)). A request of
// thousands of keys is split into tasks, each owning a contiguous range of
// shards, run in parallel on the pool; a task locks its shards once and goes
// through its keys in request order. A smaller request (or one without a pool)
// is one task on the caller, locking every shard, or only the shards it touches
// if it has fewer keys than there are shards. Inside a shard, an open-addressing
// index (16-byte slots {key, row id, epoch stamp}, linear probing, doubled at 3/4
// load, backward-shift deletion) points to rows of [dim weights][optimizer
// state] floats held in chunks that never move; rows freed by eviction are
// reused by new rows of the same shard. Lookups prefetch index slots and rows
// well ahead of use.
//
// Epochs: the table has a current epoch (1 at creation, advanced by
// AdvanceEpoch). A row is stamped with the current epoch when it is created (by
// Pull, Push, PushPull or Import) and when it is modified (Push, PushPull,
// Import); a Pull of an existing row leaves its stamp. The stamp lives in the
// row's index slot, not in the row: rows keep their size and alignment, Pull and
// Push touch the same cache lines as without stamps, and ExportSince and
// EvictStale scan the index without reading unchanged rows.
//
// Model versions: capture a version as `e = AdvanceEpoch()` followed by Export()
// (full) or ExportSince(previous e) (delta), and keep e: the next delta is
// ExportSince(e). Anything that changes after AdvanceEpoch returns is stamped
// (or, if evicted, tombstoned) with an epoch >= e, so nothing is missed even if
// requests run during the capture (a row changed during the capture may appear
// in two consecutive versions, which is harmless: rows are complete).
//
// The `pool` arguments may be nullptr (everything runs on the caller); a pool is
// only borrowed for the duration of the call. Requests hold fewer than 2^32
// keys. Within a request, duplicate keys are applied one after the other in
// request order.
class EmbeddingTable {
 public:
  // Requires a sparse config (ValidateTableConfig) and num_shards >= 1.
  // Errors: InvalidArgument for a bad config or a shard count of 0.
  static StatusOr<std::unique_ptr<EmbeddingTable>> Create(const proto::TableConfig& config,
                                                          uint32_t num_shards);
  ~EmbeddingTable();
  EmbeddingTable(const EmbeddingTable&) = delete;
  EmbeddingTable& operator=(const EmbeddingTable&) = delete;

  const proto::TableConfig& config() const { return config_; }
  uint32_t dim() const { return dim_; }
  uint32_t num_shards() const { return num_shards_; }

  // out[i*dim, (i+1)*dim) = weights of keys[i]. Missing rows are created
  // (with feature admission: missing rows read as zeros and are not created).
  void Pull(std::span<const uint64_t> keys, float* out, ThreadPool* pool);
  // Applies grads[i*dim, (i+1)*dim) to keys[i] with the optimizer. With
  // feature admission (config().admission(), server/admission.h) a push of a
  // key without a row counts a sighting, and creates the row and applies the
  // gradient only once the key is admitted.
  void Push(std::span<const uint64_t> keys, const float* grads, ThreadPool* pool);
  // Push, then out = the updated weights (as a Push followed by a Pull of the
  // same keys, done with one lock of each shard).
  void PushPull(std::span<const uint64_t> keys, const float* grads, float* out, ThreadPool* pool);

  // Number of rows.
  size_t size() const;
  // Feature admission counters over every shard (zeros without admission).
  AdmissionStats admission_stats() const;
  // Bytes allocated: index slots (with the epoch stamps) + row chunks (weights
  // and optimizer state, including the unused tail of each shard's last chunk
  // and rows freed by eviction) + tombstones + bookkeeping.
  size_t MemoryBytes() const;
  // Bytes of weights and optimizer state of one row (the epoch stamp is in the
  // index slot; MemoryBytes counts it there).
  size_t RowBytes() const { return row_floats_ * sizeof(float); }

  // Calls fn(key, weights) (dim() floats) for every row, one shard at a time with
  // that shard locked; fn must not call back into this table. For tests and
  // snapshots.
  void ForEachRow(const std::function<void(uint64_t key, const float* w)>& fn) const;

  // Optimizer state floats per row (after its dim() weights).
  size_t state_floats() const { return row_floats_ - dim_; }
  // Appends every row's key, weights (dim() floats) and optimizer state
  // (state_floats()) to the vectors; each shard is locked while it is copied.
  // With a pool, shards are copied in parallel.
  void Export(std::vector<uint64_t>* keys, std::vector<float>* weights, std::vector<float>* state,
              ThreadPool* pool = nullptr) const;
  // Sets rows from an export: creates missing rows, overwrites the weights and
  // optimizer state of existing ones, and stamps them with the current epoch.
  // `state` may be empty (the state then starts as for a new row with these
  // weights). A key given twice gets its last row. Meant for bulk loads: the keys
  // are grouped by shard, each shard is locked once (starting at a shard that
  // depends on the keys, so that concurrent imports rarely meet), lookups are
  // prefetched, and new rows skip the initializer. Several threads may import
  // at once. Errors: InvalidArgument on sizes.
  Status Import(std::span<const uint64_t> keys, std::span<const float> weights,
                std::span<const float> state);
  // Removes the rows of `keys` (keys without a row are skipped) without
  // recording tombstones: for loading a delta's deletions into a restored
  // table. Returns the number of rows removed.
  size_t Remove(std::span<const uint64_t> keys);
  // Removes every row and every tombstone, frees their memory and resets feature
  // admission: the table is as created, except that the epoch keeps its value
  // (captures taken before remain older than anything stamped after). Locks
  // every shard.
  void Clear();
  // Sizes the index of every shard for `rows` rows in the whole table (spread
  // evenly by the hash), so that importing them does not regrow it; an empty
  // shard also gets its rows' memory at once, faulted in together (whole 2 MiB
  // for the mean row count of a shard: nothing for small tables, and at most a
  // chunk left unused).
  void Reserve(size_t rows);

  // The current epoch (>= 1).
  uint32_t epoch() const { return epoch_.load(std::memory_order_relaxed); }
  // Makes the current epoch one higher and returns it: rows created or modified
  // from now on get the new epoch. CHECK-fails after 2^32 - 1 epochs.
  uint32_t AdvanceEpoch();

  // A delta since `since_epoch`: appends to keys/weights/state (as Export) every
  // row stamped with an epoch >= since_epoch, and to `tombstones` every key
  // evicted at an epoch >= since_epoch that has no row now (a key evicted and
  // re-created since then is reported as a row only; each key at most once).
  // Applying the tombstones (erase) and then the rows (upsert) to any capture
  // taken after the epoch became since_epoch (e.g. an Export right after
  // AdvanceEpoch returned it) gives the current state, provided no tombstones of
  // epochs >= since_epoch were dropped.
  // since_epoch 0 (or 1) exports every row, with every tombstone still kept.
  // Each shard is locked while it is copied.
  void ExportSince(uint32_t since_epoch, std::vector<uint64_t>* keys, std::vector<float>* weights,
                   std::vector<float>* state, std::vector<uint64_t>* tombstones) const;

  // Removes every row stamped with an epoch < older_than_epoch (rows not created
  // or modified since then), records their keys as tombstones of the current
  // epoch, and keeps their memory for new rows of the same shard (MemoryBytes
  // does not shrink). A later Pull or Push of such a key creates a new row with
  // the initializer. Returns the number of rows removed. Locks one shard at a
  // time.
  size_t EvictStale(uint32_t older_than_epoch);
  // Forgets the tombstones recorded at epochs < epoch (once a full version at or
  // after that epoch exists, no delta needs them) and frees their memory.
  void DropTombstonesBefore(uint32_t epoch);
  // Number of tombstones kept (a key evicted twice counts twice).
  size_t num_tombstones() const;

 private:
  enum class Op { kPull, kPush, kPushPull };
  struct Shard;
  struct Slot;

  EmbeddingTable(const proto::TableConfig& config, uint32_t num_shards,
                 std::unique_ptr<Optimizer> optimizer);

  void Run(Op op, std::span<const uint64_t> keys, const float* grads, float* out, ThreadPool* pool);
  // Applies `op` to the `n` keys keys[positions[j]] (keys[j] if positions is
  // nullptr), which all belong to `shards` (ascending; locked for the call).
  // `rows` has room for n pointers.
  void RunTask(Op op, std::span<const uint32_t> shards, const uint32_t* positions, size_t n,
               const uint64_t* keys, const float* grads, float* out, float** rows);
  // The index slot of `key` (whose MixKey is `hash`), or nullptr. Requires
  // shard.mu; valid until the shard's index changes (Insert, Erase).
  static Slot* Find(const Shard& shard, uint64_t key, uint64_t hash);
  // Adds a row for `key`, which must be missing, stamped with `epoch`; returns
  // its slot. Requires shard.mu.
  Slot* Insert(Shard& shard, uint64_t key, uint64_t hash, uint32_t epoch, bool initialize = true);
  // The floats of row `id` of `shard`. Requires shard.mu.
  float* RowOf(const Shard& shard, uint32_t id) const;
  // A new row for `key`: a freed one, or the next of the last chunk; filled by
  // the initializer and the optimizer's initial state when `initialize`.
  uint32_t NewRow(Shard& shard, uint64_t key, bool initialize = true);
  void Grow(Shard& shard);
  // Makes `shard` empty, as at creation (frees its rows, index and tombstones).
  // Requires shard.mu.
  void ResetShard(Shard& shard);
  // Rebuilds the shard's index with `capacity` slots (a power of two that holds
  // its rows below the 3/4 load).
  void Rehash(Shard& shard, size_t capacity);
  // Imports keys[positions[j]] (all of `shard`, which the caller has locked).
  void ImportIntoShard(Shard& shard, const uint32_t* positions, size_t n, const uint64_t* keys,
                       const float* weights, const float* state);
  // Removes the slot at index i (backward-shift deletion) and frees its row.
  void Erase(Shard& shard, size_t i);
  // Recomputes the shard's tombstone bytes (and its share of MemoryBytes).
  static void UpdateTombstoneBytes(Shard& shard);

  const proto::TableConfig config_;
  const uint32_t dim_;
  const uint32_t num_shards_;
  const std::unique_ptr<Optimizer> optimizer_;
  const Initializer initializer_;
  const bool admits_all_ids_;      // no feature admission
  const size_t row_floats_;        // dim + optimizer state
  const size_t first_chunk_rows_;  // rows in a shard's first chunk; a power of two
  const size_t max_chunk_rows_;    // chunk size doubles up to this; a power of two
  // Row id = chunk << chunk_shift_ | row in chunk (chunk_shift_ = log2 max_chunk_rows_).
  const uint32_t chunk_shift_;
  std::atomic<uint32_t> epoch_{1};
  std::unique_ptr<Shard[]> shards_;
  std::vector<uint32_t> all_shards_;  // 0, 1, ..., num_shards - 1
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_EMBEDDING_TABLE_H_
