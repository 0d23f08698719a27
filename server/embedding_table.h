// EmbeddingTable: one server's part of a sparse table. Exact 64-bit keys (no
// collisions; every uint64 value is a valid key), rows created on first pull or
// push with the table's initializer, optimizer state stored next to each row.
// Thread-safety: keys are split over internal shards, each with its own mutex;
// every method may be called concurrently from any number of threads.
#ifndef EDDY_SERVER_EMBEDDING_TABLE_H_
#define EDDY_SERVER_EMBEDDING_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "common/proto/eddy.pb.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "server/initializer.h"
#include "server/optimizer.h"

namespace eddy::server {

// A key belongs to shard eddy::ShardOfHash(eddy::MixKey(key)). A request of
// thousands of keys is split into tasks, each owning a contiguous range of
// shards, run in parallel on the pool; a task locks its shards once and goes
// through its keys in request order. A smaller request (or one without a pool)
// is one task on the caller, locking every shard, or only the shards it touches
// if it has fewer keys than there are shards. Inside a shard, an open-addressing
// index (16-byte slots {key, row pointer}, linear probing, doubled at 3/4 load)
// points to rows of [dim weights][optimizer state] floats held in chunks that
// never move. Lookups prefetch index slots and rows well ahead of use.
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

  // out[i*dim, (i+1)*dim) = weights of keys[i]. Missing rows are created.
  void Pull(std::span<const uint64_t> keys, float* out, ThreadPool* pool);
  // Applies grads[i*dim, (i+1)*dim) to keys[i] with the optimizer.
  void Push(std::span<const uint64_t> keys, const float* grads, ThreadPool* pool);
  // Push, then out = the updated weights (as a Push followed by a Pull of the
  // same keys, done with one lock of each shard).
  void PushPull(std::span<const uint64_t> keys, const float* grads, float* out, ThreadPool* pool);

  // Number of rows.
  size_t size() const;
  // Bytes allocated: index slots + row chunks (weights and optimizer state,
  // including the unused tail of each shard's last chunk) + bookkeeping.
  size_t MemoryBytes() const;
  // Bytes of weights and optimizer state of one row.
  size_t RowBytes() const { return row_floats_ * sizeof(float); }

  // Calls fn(key, weights) (dim() floats) for every row, one shard at a time with
  // that shard locked; fn must not call back into this table. For tests and
  // snapshots.
  void ForEachRow(const std::function<void(uint64_t key, const float* w)>& fn) const;

  // Optimizer state floats per row (after its dim() weights).
  size_t state_floats() const { return row_floats_ - dim_; }
  // Appends every row's key, weights (dim() floats) and optimizer state
  // (state_floats()) to the vectors; each shard is locked while it is copied.
  void Export(std::vector<uint64_t>* keys, std::vector<float>* weights,
              std::vector<float>* state) const;
  // Sets rows from an export: creates missing rows, overwrites the weights and
  // optimizer state of existing ones. `state` may be empty (the state then starts
  // as for a new row with these weights). Errors: InvalidArgument on sizes.
  Status Import(std::span<const uint64_t> keys, std::span<const float> weights,
                std::span<const float> state);

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
  // The row of `key` (whose MixKey is `hash`), or nullptr. Requires shard.mu.
  static float* Find(const Shard& shard, uint64_t key, uint64_t hash);
  // Adds a row for `key`, which must be missing. Requires shard.mu.
  float* Insert(Shard& shard, uint64_t key, uint64_t hash);
  float* NewRow(Shard& shard, uint64_t key);
  void Grow(Shard& shard);

  const proto::TableConfig config_;
  const uint32_t dim_;
  const uint32_t num_shards_;
  const std::unique_ptr<Optimizer> optimizer_;
  const Initializer initializer_;
  const size_t row_floats_;        // dim + optimizer state
  const size_t first_chunk_rows_;  // rows in a shard's first chunk
  const size_t max_chunk_rows_;    // chunk size doubles up to this
  std::unique_ptr<Shard[]> shards_;
  std::vector<uint32_t> all_shards_;  // 0, 1, ..., num_shards - 1
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_EMBEDDING_TABLE_H_
