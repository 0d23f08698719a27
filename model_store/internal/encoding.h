// Internal to model_store: the value encodings of data files (float32,
// float16, int8 with a per-row scale): names, IEEE binary16 conversions,
// checks for values an encoding cannot hold, and writing and reading a values
// section. Thread-safety: pure functions on caller-owned data.
#ifndef EDDY_MODEL_STORE_INTERNAL_ENCODING_H_
#define EDDY_MODEL_STORE_INTERNAL_ENCODING_H_

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "model_store/format.h"
#include "model_store/internal/file_io.h"

namespace eddy::model_store::internal {

// The smallest float magnitude that float16 rounds to infinity.
inline constexpr float kHalfOverflow = 65520.0f;

// "float32", "float16", "int8_row_scale", or "encoding <e>".
std::string EncodingName(int e);
// Whether `e` is one of the three encodings (not ENCODING_UNSPECIFIED).
bool ValidEncoding(int e);

// IEEE 754 binary16 conversions, round to nearest even.
uint16_t FloatToHalf(float f);
float HalfToFloat(uint16_t h);

// InvalidArgument (prefixed by `what`) for values `encoding` cannot hold:
// non-finite for int8, finite values beyond the float16 range.
Status CheckEncodable(std::span<const float> values, Encoding encoding, const std::string& what);

// Writes `values` (rows of `dim`) in `encoding` (int8: the scales first), then
// pads to 8 bytes.
Status WriteValues(FileSink* out, std::span<const float> values, uint32_t dim, Encoding encoding);

// Reads `count` values (`rows` rows of `dim`) stored in `encoding`, dequantized
// into *out, and the padding after them. DataLoss for invalid int8 scales.
Status ReadValues(FileSource* in, uint64_t count, uint64_t rows, uint32_t dim, Encoding encoding,
                  std::vector<float>* out);

}  // namespace eddy::model_store::internal

#endif  // EDDY_MODEL_STORE_INTERNAL_ENCODING_H_
