// Buffer: a ref-counted, sliceable, read-mostly byte range. It carries keys and
// values from the model to the socket and back without copies: the bytes are owned
// by whatever `owner_` keeps alive (a heap block, a received ZeroMQ message, ...).
// Thread-safety: a Buffer may be copied and read from any thread; writing through
// mutable_data() is only allowed while the writer holds the sole reference.
#ifndef EDDY_COMMON_BUFFER_H_
#define EDDY_COMMON_BUFFER_H_

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <vector>

namespace eddy {

class Buffer {
 public:
  Buffer() = default;
  // Wraps `size` bytes at `data`, kept alive by `owner`.
  Buffer(std::shared_ptr<const void> owner, const void* data, size_t size)
      : owner_(std::move(owner)), data_(static_cast<const std::byte*>(data)), size_(size) {}

  // A new zero-initialised buffer of `size` bytes, 64-byte aligned.
  static Buffer Allocate(size_t size);
  // The same without zeroing: for buffers the caller overwrites entirely.
  static Buffer AllocateUninitialized(size_t size);
  // A new buffer holding a copy of `bytes`.
  static Buffer CopyOf(const void* data, size_t size);
  template <typename T>
  static Buffer CopyOf(std::span<const T> values) {
    return CopyOf(values.data(), values.size_bytes());
  }
  // Takes ownership of a vector without copying its contents.
  template <typename T>
  static Buffer FromVector(std::vector<T> v) {
    auto holder = std::make_shared<std::vector<T>>(std::move(v));
    const void* p = holder->data();
    size_t n = holder->size() * sizeof(T);
    return Buffer(std::shared_ptr<const void>(holder, p), p, n);
  }

  const std::byte* data() const { return data_; }
  // Writable view; valid only while this is the only reference (see class comment).
  std::byte* mutable_data() { return const_cast<std::byte*>(data_); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  const std::shared_ptr<const void>& owner() const { return owner_; }

  // A view of bytes [offset, offset + size) sharing ownership.
  Buffer Slice(size_t offset, size_t size) const { return Buffer(owner_, data_ + offset, size); }

  // Typed views. Require size() to be a multiple of sizeof(T) and data() to be
  // aligned for T (see IsAlignedFor / Aligned()).
  template <typename T>
  std::span<const T> As() const {
    return {reinterpret_cast<const T*>(data_), size_ / sizeof(T)};
  }
  template <typename T>
  std::span<T> MutableAs() {
    return {reinterpret_cast<T*>(mutable_data()), size_ / sizeof(T)};
  }
  template <typename T>
  bool IsAlignedFor() const {
    return reinterpret_cast<uintptr_t>(data_) % alignof(T) == 0;
  }
  // Returns this buffer if data() is aligned to `alignment`, else an aligned copy.
  Buffer Aligned(size_t alignment = alignof(std::max_align_t)) const;

 private:
  std::shared_ptr<const void> owner_;
  const std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace eddy

#endif  // EDDY_COMMON_BUFFER_H_
