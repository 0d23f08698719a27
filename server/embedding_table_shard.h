// The inside of an EmbeddingTable shared by its source files: the index slot,
// the shard (index, row chunks, free list, tombstones) and index helpers. Not
// for use outside server/embedding_table*.cc.
// Thread-safety: a Shard's members are guarded by its mutex (see each member).
#ifndef EDDY_SERVER_EMBEDDING_TABLE_SHARD_H_
#define EDDY_SERVER_EMBEDDING_TABLE_SHARD_H_

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <vector>

#include "server/admission.h"
#include "server/embedding_table.h"

namespace eddy::server {
namespace table_internal {

constexpr size_t kCacheLine = 64;
constexpr uint32_t kNoRow = UINT32_MAX;

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};

// Index position of a hash. ServerOfKey uses the top bits of the hash and
// ShardOfHash the top bits of its low half, so the low bits of the high half are
// still uniform within one shard of one server.
inline size_t SlotIndex(uint64_t hash, size_t mask) { return std::rotr(hash, 32) & mask; }

// Evicted keys of one shard recorded at one epoch.
struct TombstoneRun {
  uint32_t epoch;
  std::vector<uint64_t> keys;
};

}  // namespace table_internal

// An index slot. Epochs start at 1, so epoch 0 marks an empty slot (and a
// calloc'ed index is empty).
struct EmbeddingTable::Slot {
  uint64_t key;
  uint32_t row;    // row id (see RowOf)
  uint32_t epoch;  // the row's stamp; 0: empty slot
};

struct alignas(table_internal::kCacheLine) EmbeddingTable::Shard {
  mutable std::mutex mu;
  // Index: capacity mask + 1 slots; guarded by mu.
  std::unique_ptr<Slot[], table_internal::FreeDeleter> slots;
  size_t mask = 0;
  size_t grow_at = 0;  // grow the index before the row count exceeds this
  size_t rows = 0;
  // Row storage; guarded by mu. Rows never move. Chunk c is chunks[c], inside
  // one of `blocks` (the memory owned): a block of its own, or a slab that
  // Reserve allocated for many chunks (on huge pages), whose unused part is
  // [slab_next, slab_next + slab_left).
  std::vector<float*> chunks;
  std::vector<std::unique_ptr<void, table_internal::FreeDeleter>> blocks;
  std::byte* slab_next = nullptr;
  size_t slab_left = 0;
  uint32_t next_row = 0;   // id of the next unused row of the last chunk
  size_t unused_rows = 0;  // rows left in the last chunk
  size_t next_chunk_rows = 0;
  // Rows freed by eviction: a list through the rows' first 4 bytes.
  uint32_t free_head = table_internal::kNoRow;
  // Tombstones, in ascending epochs; guarded by mu.
  std::vector<table_internal::TombstoneRun> tombstones;
  size_t tombstone_bytes = 0;  // included in bytes
  // Feature admission (null when the table admits every id); guarded by mu.
  std::unique_ptr<AdmissionFilter> admission;
  // Written under mu, read without it by size() and MemoryBytes().
  std::atomic<size_t> num_rows{0};
  std::atomic<size_t> bytes{0};
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_EMBEDDING_TABLE_SHARD_H_
