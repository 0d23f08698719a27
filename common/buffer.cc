#include "common/buffer.h"

#include <cstdlib>
#include <new>

namespace eddy {

Buffer Buffer::Allocate(size_t size) {
  Buffer b = AllocateUninitialized(size);
  if (size > 0) std::memset(b.mutable_data(), 0, size);
  return b;
}

Buffer Buffer::AllocateUninitialized(size_t size) {
  constexpr size_t kAlign = 64;
  size_t rounded = (size + kAlign - 1) / kAlign * kAlign;
  if (rounded == 0) rounded = kAlign;
  void* p = std::aligned_alloc(kAlign, rounded);
  if (p == nullptr) throw std::bad_alloc();
  std::shared_ptr<const void> owner(p, [](const void* q) { std::free(const_cast<void*>(q)); });
  return Buffer(std::move(owner), p, size);
}

Buffer Buffer::CopyOf(const void* data, size_t size) {
  Buffer b = AllocateUninitialized(size);
  if (size > 0) std::memcpy(b.mutable_data(), data, size);
  return b;
}

Buffer Buffer::Aligned(size_t alignment) const {
  if (reinterpret_cast<uintptr_t>(data_) % alignment == 0) return *this;
  return CopyOf(data_, size_);
}

}  // namespace eddy
