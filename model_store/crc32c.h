// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven software
// implementation (slicing-by-8). Used to check model files on disk.
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

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_CRC32C_H_
