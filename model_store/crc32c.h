// CRC32C (Castagnoli, reflected polynomial 0x82F63B78): the SSE4.2 crc32
// instruction where the CPU has it (checked once at run time), else a
// table-driven software implementation (slicing-by-8). Used to check model
// files on disk. Crc32cCombine joins the CRCs of consecutive pieces, so a file
// can be checked in pieces on several threads.
// Thread-safety: pure functions.
#ifndef EDDY_MODEL_STORE_CRC32C_H_
#define EDDY_MODEL_STORE_CRC32C_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace eddy::model_store {

// Returns the CRC32C of `data` continued from `crc`, the CRC32C of the bytes
// before it (0 for none): Crc32cExtend(Crc32c(a), b) == Crc32c(a + b).
uint32_t Crc32cExtend(uint32_t crc, std::span<const std::byte> data);

inline uint32_t Crc32c(std::span<const std::byte> data) { return Crc32cExtend(0, data); }
inline uint32_t Crc32c(std::string_view data) {
  return Crc32c(std::as_bytes(std::span(data.data(), data.size())));
}

// The CRC32C of a + b from crc_a = Crc32c(a), crc_b = Crc32c(b) and the length
// of b, in O(log len_b).
uint32_t Crc32cCombine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

// Whether Crc32cExtend uses the CPU's crc32 instruction (for benchmarks).
bool Crc32cIsHardware();

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_CRC32C_H_
