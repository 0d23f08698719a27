// Key hashing and partitioning: which server, and which shard inside it, owns a
// 64-bit feature id; which server owns which slice of a dense tensor.
// Thread-safety: pure functions.
#ifndef EDDY_COMMON_PARTITION_H_
#define EDDY_COMMON_PARTITION_H_

#include <cstddef>
#include <cstdint>

namespace eddy {

// A bijective 64-bit mixer (the finaliser of SplitMix64): consecutive or
// structured ids come out uniformly spread.
inline uint64_t MixKey(uint64_t key) {
  key += 0x9e3779b97f4a7c15ULL;
  key = (key ^ (key >> 30)) * 0xbf58476d1ce4e5b9ULL;
  key = (key ^ (key >> 27)) * 0x94d049bb133111ebULL;
  return key ^ (key >> 31);
}

// floor(x * n / 2^64): maps a uniform 64-bit value onto [0, n) uniformly.
inline uint32_t ScaleToRange(uint64_t x, uint32_t n) {
  return static_cast<uint32_t>((static_cast<unsigned __int128>(x) * n) >> 64);
}

// The server owning `key` among `num_servers` (uses the high bits of the hash).
inline uint32_t ServerOfKey(uint64_t key, uint32_t num_servers) {
  return ScaleToRange(MixKey(key), num_servers);
}

// Given the key hash, the shard inside a server. Uses bits independent of the
// ones ServerOfKey uses, so every shard of every server gets an equal share.
inline uint32_t ShardOfHash(uint64_t hash, uint32_t num_shards) {
  return ScaleToRange(hash << 32 | hash >> 32, num_shards);
}

// Dense tensors of `count` elements are cut into contiguous, near-equal slices,
// one per server. Returns the first element of `server`'s slice (server may be
// num_servers, giving count).
inline uint64_t DenseSliceBegin(uint64_t count, uint32_t server, uint32_t num_servers) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(count) * server) / num_servers);
}

}  // namespace eddy

#endif  // EDDY_COMMON_PARTITION_H_
