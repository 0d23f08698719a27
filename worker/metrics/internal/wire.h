// Little-endian fixed-width encoding helpers for metric accumulators.
// Thread-safety: a ByteWriter/ByteReader is used by one thread at a time.
#ifndef EDDY_WORKER_METRICS_INTERNAL_WIRE_H_
#define EDDY_WORKER_METRICS_INTERNAL_WIRE_H_

#include <bit>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace eddy::worker::internal {

static_assert(std::endian::native == std::endian::little,
              "wire format assumes little-endian hosts");

// Appends fixed-width values to a string (does not own it).
class ByteWriter {
 public:
  explicit ByteWriter(std::string* out) : out_(out) {}
  void U32(uint32_t v) { Raw(&v, sizeof(v)); }
  void U64(uint64_t v) { Raw(&v, sizeof(v)); }
  void F64(double v) { Raw(&v, sizeof(v)); }
  void Bytes(std::string_view b) {
    U64(b.size());
    out_->append(b);
  }

 private:
  void Raw(const void* p, size_t n) { out_->append(static_cast<const char*>(p), n); }
  std::string* out_;
};

// Reads fixed-width values; every read returns false (and reads nothing) when
// too few bytes remain.
class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}
  bool U32(uint32_t* v) { return Raw(v, sizeof(*v)); }
  bool U64(uint64_t* v) { return Raw(v, sizeof(*v)); }
  bool F64(double* v) { return Raw(v, sizeof(*v)); }
  bool Bytes(std::string_view* b) {
    uint64_t n = 0;
    if (!U64(&n) || n > in_.size()) return false;
    *b = in_.substr(0, n);
    in_.remove_prefix(n);
    return true;
  }
  size_t remaining() const { return in_.size(); }

 private:
  bool Raw(void* p, size_t n) {
    if (in_.size() < n) return false;
    std::memcpy(p, in_.data(), n);
    in_.remove_prefix(n);
    return true;
  }
  std::string_view in_;
};

}  // namespace eddy::worker::internal

#endif  // EDDY_WORKER_METRICS_INTERNAL_WIRE_H_
