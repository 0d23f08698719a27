#include "model_store/internal/cli_text.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace eddy::model_store::internal {

using proto::Manifest;

std::string Utc(int64_t unix_ms) {
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return "?";
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

std::string Bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof(buf), u == 0 ? "%.0f %s" : "%.1f %s", v, units[u]);
  return buf;
}

std::string Count(uint64_t n) {
  char buf[32];
  if (n >= 10'000'000) {
    std::snprintf(buf, sizeof(buf), "%.1fM", static_cast<double>(n) / 1e6);
  } else if (n >= 100'000) {
    std::snprintf(buf, sizeof(buf), "%.0fk", static_cast<double>(n) / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%llu", static_cast<unsigned long long>(n));
  }
  return buf;
}

std::string Number(double v, const char* format) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

namespace {

// `e` as "fp16" or "int8", float32 as `float32`, anything else as `unknown`.
std::string EncodingLabel(int e, const char* float32, const char* unknown) {
  switch (e) {
    case Manifest::ENCODING_FLOAT32:
      return float32;
    case Manifest::ENCODING_FLOAT16:
      return "fp16";
    case Manifest::ENCODING_INT8_ROW_SCALE:
      return "int8";
    default:
      return unknown;
  }
}

}  // namespace

std::string ShortEncoding(int e) { return EncodingLabel(e, "f32", "?"); }

std::string LongEncoding(int e) { return EncodingLabel(e, "float32", "unknown"); }

StatusOr<Encoding> ParseEncoding(const std::string& s) {
  if (s == "float32" || s == "f32" || s == "fp32") return Manifest::ENCODING_FLOAT32;
  if (s == "fp16" || s == "float16" || s == "f16") return Manifest::ENCODING_FLOAT16;
  if (s == "int8" || s == "int8_row_scale") return Manifest::ENCODING_INT8_ROW_SCALE;
  return InvalidArgumentError("--encoding=" + s + " is not one of float32, fp16, int8");
}

std::string Join(const std::vector<std::string>& parts, const std::string& sep) {
  std::string out;
  for (size_t i = 0; i < parts.size(); ++i) out += (i ? sep : "") + parts[i];
  return out;
}

std::string VersionList(const std::vector<uint64_t>& versions) {
  if (versions.empty()) return "none";
  std::vector<std::string> parts;
  for (uint64_t v : versions) parts.push_back(std::to_string(v));
  return Join(parts, ", ");
}

void PrintTable(const std::vector<std::vector<std::string>>& rows, const std::string& indent) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    if (width.size() < row.size()) width.resize(row.size());
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line = indent;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string JsonNumber(double v) {
  if (!std::isfinite(v)) return "null";
  return Number(v, "%.17g");
}

}  // namespace eddy::model_store::internal
