#include "model_store/internal/data_file.h"

#include <bit>
#include <cstring>
#include <limits>

#include "model_store/crc32c.h"
#include "model_store/internal/encoding.h"

namespace eddy::model_store::internal {

static_assert(std::endian::native == std::endian::little,
              "model files are little-endian and written from memory as is");

namespace {

using proto::Manifest;

template <typename T>
void Put(std::array<std::byte, kHeaderBytes>* b, size_t at, T v) {
  std::memcpy(b->data() + at, &v, sizeof(T));
}
template <typename T>
T Get(const std::array<std::byte, kHeaderBytes>& b, size_t at) {
  T v;
  std::memcpy(&v, b.data() + at, sizeof(T));
  return v;
}

}  // namespace

std::array<std::byte, kHeaderBytes> EncodeHeader(const DataHeader& h) {
  std::array<std::byte, kHeaderBytes> b{};
  std::memcpy(b.data(), kMagic, sizeof(kMagic));
  Put<uint32_t>(&b, 8, h.format_version);
  Put<uint8_t>(&b, 12, h.layout);
  Put<uint8_t>(&b, 13, h.encoding);
  Put<uint32_t>(&b, 16, h.shard);
  Put<uint32_t>(&b, 20, h.dim);
  Put<uint32_t>(&b, 24, h.state_floats);
  Put<uint64_t>(&b, 32, h.rows);
  Put<uint64_t>(&b, 40, h.tombstones);
  Put<uint64_t>(&b, 48, h.offset);
  Put<uint32_t>(&b, kHeaderCrcOffset, Crc32c(std::span(b.data(), kHeaderCrcOffset)));
  return b;
}

StatusOr<DataHeader> DecodeHeader(const std::array<std::byte, kHeaderBytes>& b,
                                  const std::string& path) {
  auto bad = [&](const std::string& what) {
    return DataLossError("model file " + path + ": " + what);
  };
  if (std::memcmp(b.data(), kMagic, sizeof(kMagic)) != 0) {
    return bad("bad magic (not an EDDYSHRD file)");
  }
  const uint32_t crc = Get<uint32_t>(b, kHeaderCrcOffset);
  if (crc != Crc32c(std::span(b.data(), kHeaderCrcOffset))) return bad("header checksum mismatch");
  DataHeader h;
  h.format_version = Get<uint32_t>(b, 8);
  if (h.format_version > kModelFormatVersion) {
    return FailedPreconditionError(
        "model file " + path + " has format version " + std::to_string(h.format_version) +
        ", newer than this reader supports (" + std::to_string(kModelFormatVersion) + ")");
  }
  if (h.format_version == 0) return bad("format version 0");
  h.layout = Get<uint8_t>(b, 12);
  h.encoding = Get<uint8_t>(b, 13);
  h.shard = Get<uint32_t>(b, 16);
  h.dim = Get<uint32_t>(b, 20);
  h.state_floats = Get<uint32_t>(b, 24);
  h.rows = Get<uint64_t>(b, 32);
  h.tombstones = Get<uint64_t>(b, 40);
  h.offset = Get<uint64_t>(b, 48);
  if (Get<uint16_t>(b, 14) != 0 || Get<uint32_t>(b, 28) != 0 || Get<uint32_t>(b, 56) != 0) {
    return bad("reserved header bytes are not zero");
  }
  if (h.layout != kLayoutSparse && h.layout != kLayoutDense) {
    return bad("unknown layout " + std::to_string(h.layout));
  }
  if (!ValidEncoding(h.encoding)) return bad("unknown " + EncodingName(h.encoding));
  if (h.state_floats > kMaxStateFloats) {
    return bad("state_floats " + std::to_string(h.state_floats) + " is out of range");
  }
  if (h.layout == kLayoutSparse) {
    if (h.dim == 0 || h.dim > kMaxDim) return bad("dim " + std::to_string(h.dim) + " is invalid");
    if (h.offset != 0) return bad("sparse file with a dense offset");
  } else {
    if (h.dim != 1) return bad("dense file with dim " + std::to_string(h.dim) + " (must be 1)");
    if (h.tombstones != 0) return bad("dense file with tombstones");
    if (h.encoding != Manifest::ENCODING_FLOAT32) return bad("dense file not in float32");
  }
  return h;
}

std::optional<Sections> ComputeSections(const DataHeader& h) {
  Sections s;
  uint64_t n_values = 0, n_state = 0, t = 0;
  const bool sparse = h.layout == kLayoutSparse;
  if (!CheckedMul(h.rows, sparse ? h.dim : 1, &n_values)) return std::nullopt;
  if (!CheckedMul(h.rows, h.state_floats, &n_state)) return std::nullopt;
  const uint64_t limit = std::numeric_limits<uint64_t>::max() / 16;
  if (h.rows > limit || n_values > limit || n_state > limit || h.tombstones > limit) {
    return std::nullopt;
  }
  s.keys = sparse ? h.rows * 8 : 0;
  switch (h.encoding) {
    case Manifest::ENCODING_FLOAT32:
      s.values = Pad8(n_values * 4);
      break;
    case Manifest::ENCODING_FLOAT16:
      s.values = Pad8(n_values * 2);
      break;
    case Manifest::ENCODING_INT8_ROW_SCALE:
      s.scales = Pad8(h.rows * 4);
      s.values = Pad8(n_values);
      break;
    default:
      return std::nullopt;
  }
  s.state = Pad8(n_state * 4);
  s.tombstones = h.tombstones * 8;
  t = kHeaderBytes;
  for (uint64_t part : {s.keys, s.scales, s.values, s.state, s.tombstones}) {
    if (!CheckedAdd(t, part, &t)) return std::nullopt;
  }
  s.total = t;
  return s;
}

}  // namespace eddy::model_store::internal
