// Internal to the eddy_models library: text formatting for its output (UTC
// times, byte sizes, counts, encodings, aligned tables, JSON strings).
// Thread-safety: thread-safe; PrintTable writes to stdout.
#ifndef EDDY_MODEL_STORE_INTERNAL_CLI_TEXT_H_
#define EDDY_MODEL_STORE_INTERNAL_CLI_TEXT_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "model_store/format.h"

namespace eddy::model_store::internal {

// "YYYY-MM-DD HH:MM:SS" in UTC.
std::string Utc(int64_t unix_ms);
// "512 B", "1.5 MiB".
std::string Bytes(uint64_t n);
// "1234", "250k", "12.5M".
std::string Count(uint64_t n);
std::string Number(double v, const char* format = "%.4f");
// "f32", "fp16", "int8" / "float32", "fp16", "int8".
std::string ShortEncoding(int e);
std::string LongEncoding(int e);
// --encoding: InvalidArgument naming the accepted values.
StatusOr<Encoding> ParseEncoding(const std::string& s);
std::string Join(const std::vector<std::string>& parts, const std::string& sep);
// "1, 2, 5" or "none".
std::string VersionList(const std::vector<uint64_t>& versions);
// Prints rows as columns padded to their widest cell (the last one unpadded).
void PrintTable(const std::vector<std::vector<std::string>>& rows, const std::string& indent = "");
// A JSON string literal, escaped.
std::string JsonString(std::string_view s);
// A JSON number; null if not finite.
std::string JsonNumber(double v);

}  // namespace eddy::model_store::internal

#endif  // EDDY_MODEL_STORE_INTERNAL_CLI_TEXT_H_
