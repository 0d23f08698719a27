#include "model_store/internal/encoding.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>

namespace eddy::model_store::internal {
namespace {

using proto::Manifest;

// Scale of one int8 row: the smallest float s with max|x| / s <= 127, so that
// every |x / s| <= 127 and rounding errs by at most s / 2.
float Int8RowScale(std::span<const float> row) {
  float max_abs = 0;
  for (float x : row) max_abs = std::max(max_abs, std::fabs(x));
  if (max_abs == 0) return 0;
  float scale = max_abs / 127.0f;
  if (scale == 0) scale = std::numeric_limits<float>::denorm_min();
  while (static_cast<double>(max_abs) / scale > 127.0) {
    scale = std::nextafter(scale, std::numeric_limits<float>::infinity());
  }
  return scale;
}

int8_t Int8Code(float x, float scale) {
  if (scale == 0) return 0;
  const double q = std::nearbyint(static_cast<double>(x) / scale);
  return static_cast<int8_t>(std::clamp(q, -127.0, 127.0));
}

}  // namespace

std::string EncodingName(int e) {
  switch (e) {
    case Manifest::ENCODING_FLOAT32:
      return "float32";
    case Manifest::ENCODING_FLOAT16:
      return "float16";
    case Manifest::ENCODING_INT8_ROW_SCALE:
      return "int8_row_scale";
    default:
      return "encoding " + std::to_string(e);
  }
}

bool ValidEncoding(int e) {
  return e == Manifest::ENCODING_FLOAT32 || e == Manifest::ENCODING_FLOAT16 ||
         e == Manifest::ENCODING_INT8_ROW_SCALE;
}

uint16_t FloatToHalf(float f) {
  // Round to nearest even (after F. Giesen, "float_to_half_fast3_rtne").
  uint32_t x = std::bit_cast<uint32_t>(f);
  const uint32_t sign = x & 0x80000000u;
  x ^= sign;
  uint16_t o;
  constexpr uint32_t kF32Inf = 255u << 23;
  constexpr uint32_t kF16Max = (127u + 16u) << 23;  // 2^16: at or above, inf (or NaN)
  constexpr uint32_t kDenormMagic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  if (x >= kF16Max) {
    o = x > kF32Inf ? 0x7E00 : 0x7C00;
  } else if (x < (113u << 23)) {  // below 2^-14: subnormal half or zero
    const float r = std::bit_cast<float>(x) + std::bit_cast<float>(kDenormMagic);
    o = static_cast<uint16_t>(std::bit_cast<uint32_t>(r) - kDenormMagic);
  } else {
    const uint32_t mant_odd = (x >> 13) & 1u;
    x += (static_cast<uint32_t>(15 - 127) << 23) + 0xFFFu;
    x += mant_odd;
    o = static_cast<uint16_t>(x >> 13);
  }
  return static_cast<uint16_t>(o | (sign >> 16));
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1Fu;
  const uint32_t mant = h & 0x3FFu;
  if (exp == 0) {
    const float v = std::ldexp(static_cast<float>(mant), -24);
    return std::bit_cast<float>(std::bit_cast<uint32_t>(v) | sign);
  }
  if (exp == 31) return std::bit_cast<float>(sign | 0x7F800000u | (mant << 13));
  return std::bit_cast<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

// Values that `encoding` cannot hold: non-finite for int8, finite values beyond
// the float16 range (they would become infinities).
Status CheckEncodable(std::span<const float> values, Encoding encoding, const std::string& what) {
  if (encoding == Manifest::ENCODING_FLOAT16) {
    for (size_t i = 0; i < values.size(); ++i) {
      if (std::isfinite(values[i]) && std::fabs(values[i]) >= kHalfOverflow) {
        return InvalidArgumentError(what + ": value " + std::to_string(values[i]) + " at index " +
                                    std::to_string(i) +
                                    " is beyond the float16 range; use float32");
      }
    }
  } else if (encoding == Manifest::ENCODING_INT8_ROW_SCALE) {
    for (size_t i = 0; i < values.size(); ++i) {
      if (!std::isfinite(values[i])) {
        return InvalidArgumentError(what + ": non-finite value at index " + std::to_string(i) +
                                    " cannot be stored as int8");
      }
    }
  }
  return OkStatus();
}

// Writes `values` (rows of `dim`) in `encoding`, padded.
Status WriteValues(FileSink* out, std::span<const float> values, uint32_t dim, Encoding encoding) {
  switch (encoding) {
    case Manifest::ENCODING_FLOAT32:
      RETURN_IF_ERROR(out->AppendArray(values));
      break;
    case Manifest::ENCODING_FLOAT16: {
      std::vector<uint16_t> chunk;
      for (size_t i = 0; i < values.size(); i += kIoChunk / 2) {
        const size_t n = std::min(values.size() - i, kIoChunk / 2);
        chunk.resize(n);
        for (size_t j = 0; j < n; ++j) chunk[j] = internal::FloatToHalf(values[i + j]);
        RETURN_IF_ERROR(out->AppendArray(std::span<const uint16_t>(chunk)));
      }
      break;
    }
    case Manifest::ENCODING_INT8_ROW_SCALE: {
      const size_t rows = values.size() / dim;
      std::vector<float> scales(rows);
      for (size_t r = 0; r < rows; ++r) scales[r] = Int8RowScale(values.subspan(r * dim, dim));
      RETURN_IF_ERROR(out->AppendArray(std::span<const float>(scales)));
      RETURN_IF_ERROR(out->PadTo8());
      std::vector<int8_t> chunk;
      chunk.reserve(kIoChunk);
      for (size_t r = 0; r < rows; ++r) {
        for (size_t j = 0; j < dim; ++j) chunk.push_back(Int8Code(values[r * dim + j], scales[r]));
        if (chunk.size() >= kIoChunk - dim || r + 1 == rows) {
          RETURN_IF_ERROR(out->AppendArray(std::span<const int8_t>(chunk)));
          chunk.clear();
        }
      }
      break;
    }
    default:
      return InternalError("unknown encoding");
  }
  return out->PadTo8();
}

// Reads `count` values (rows of `dim`) stored in `encoding` and dequantizes.
Status ReadValues(FileSource* in, uint64_t count, uint64_t rows, uint32_t dim, Encoding encoding,
                  std::vector<float>* out) {
  switch (encoding) {
    case Manifest::ENCODING_FLOAT32:
      RETURN_IF_ERROR(in->ReadArray(count, out));
      break;
    case Manifest::ENCODING_FLOAT16: {
      std::vector<uint16_t> half;
      RETURN_IF_ERROR(in->ReadArray(count, &half));
      out->resize(count);
      for (uint64_t i = 0; i < count; ++i) (*out)[i] = internal::HalfToFloat(half[i]);
      break;
    }
    case Manifest::ENCODING_INT8_ROW_SCALE: {
      std::vector<float> scales;
      RETURN_IF_ERROR(in->ReadArray(rows, &scales));
      for (uint64_t r = 0; r < rows; ++r) {
        if (!std::isfinite(scales[r]) || scales[r] < 0) {
          return DataLossError("model file " + in->path() + ": invalid int8 scale in row " +
                               std::to_string(r));
        }
      }
      RETURN_IF_ERROR(in->SkipPadding());
      std::vector<int8_t> codes;
      RETURN_IF_ERROR(in->ReadArray(count, &codes));
      out->resize(count);
      for (uint64_t i = 0; i < count; ++i) {
        (*out)[i] = static_cast<float>(codes[i]) * scales[i / dim];
      }
      break;
    }
    default:
      return DataLossError("model file " + in->path() + ": unknown encoding");
  }
  return in->SkipPadding();
}

}  // namespace eddy::model_store::internal
