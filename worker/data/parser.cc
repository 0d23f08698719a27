#include "worker/data/parser.h"

#include <array>
#include <bit>
#include <charconv>
#include <cmath>
#include <string>

namespace eddy::worker {
namespace {

constexpr std::array<std::string_view, kNumRowErrors> kRowErrorNames = {
    "wrong_column_count", "bad_number", "bad_label",  "bad_token",
    "too_long",           "binary",     "empty_line",
};

// Quotes at most 40 bytes of `s` for an error message.
std::string Excerpt(std::string_view s) {
  constexpr size_t kMax = 40;
  std::string out = "\"";
  for (char c : s.substr(0, kMax)) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u >= 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    } else {
      out += c;
    }
  }
  out += s.size() > kMax ? "\"..." : "\"";
  return out;
}

// Strips one trailing '\r' and applies the checks shared by every format.
Status Prepare(std::string_view* line, const ParserOptions& options) {
  if (!line->empty() && line->back() == '\r') line->remove_suffix(1);
  if (line->size() > options.max_line_bytes) {
    return RowErrorStatus(RowError::kTooLong, std::to_string(line->size()) + " bytes, limit " +
                                                  std::to_string(options.max_line_bytes));
  }
  if (line->empty()) return RowErrorStatus(RowError::kEmptyLine, "no columns");
  return OkStatus();
}

Status BinaryError(std::string_view line, size_t pos) {
  return RowErrorStatus(
      RowError::kBinary, "control byte 0x" + [&] {
        static constexpr char kHex[] = "0123456789abcdef";
        unsigned char u = static_cast<unsigned char>(line[pos]);
        return std::string{kHex[u >> 4], kHex[u & 15]};
      }() + " at offset " + std::to_string(pos));
}

template <typename T>
bool ParseWhole(std::string_view s, T* value, int base = 10) {
  const char* end = s.data() + s.size();
  std::from_chars_result r;
  if constexpr (std::is_floating_point_v<T>) {
    (void)base;
    r = std::from_chars(s.data(), end, *value);
  } else {
    r = std::from_chars(s.data(), end, *value, base);
  }
  return r.ec == std::errc() && r.ptr == end && !s.empty();
}

// log(1 + x) as float; a table for the small values most Criteo integers take.
float Log1p(uint64_t x) {
  constexpr uint64_t kTableSize = 4096;
  static const std::array<float, kTableSize> kTable = [] {
    std::array<float, kTableSize> t;
    for (uint64_t i = 0; i < kTableSize; ++i)
      t[i] = static_cast<float>(std::log1p(static_cast<double>(i)));
    return t;
  }();
  return x < kTableSize ? kTable[x] : static_cast<float>(std::log1p(static_cast<double>(x)));
}

class CriteoParser final : public Parser {
 public:
  explicit CriteoParser(ParserOptions options) : options_(options) {}

  Status Parse(std::string_view line, Example* out) const override {
    out->Clear();
    RETURN_IF_ERROR(Prepare(&line, options_));
    constexpr int kColumns = 1 + kCriteoIntegerFeatures + kCriteoCategoricalFeatures;
    std::array<std::string_view, kColumns> cols;
    int ncol = 0;
    const char* data = line.data();
    const size_t n = line.size();
    size_t start = 0;
    for (size_t i = 0; i < n; ++i) {
      unsigned char c = static_cast<unsigned char>(data[i]);
      if (c < 0x20 || c == 0x7f) [[unlikely]] {
        if (c != '\t') return BinaryError(line, i);
        if (ncol < kColumns) cols[ncol] = std::string_view(data + start, i - start);
        ++ncol;
        start = i + 1;
      }
    }
    if (ncol < kColumns) cols[ncol] = std::string_view(data + start, n - start);
    ++ncol;
    if (ncol != kColumns) {
      return RowErrorStatus(
          RowError::kWrongColumnCount,
          std::to_string(ncol) + " columns, expected " + std::to_string(kColumns));
    }
    if (cols[0] == "1") {
      out->label = 1;
    } else if (cols[0] == "0") {
      out->label = 0;
    } else {
      return RowErrorStatus(RowError::kBadLabel, "label " + Excerpt(cols[0]) + ", expected 0 or 1");
    }
    const CriteoIntegers mode = options_.criteo_integers;
    const bool want_dense = mode != CriteoIntegers::kBuckets;
    const bool want_ids = mode != CriteoIntegers::kDense;
    out->dense.assign(want_dense ? kCriteoIntegerFeatures : 0, 0.0f);
    for (uint32_t f = 0; f < kCriteoIntegerFeatures; ++f) {
      std::string_view s = cols[1 + f];
      if (s.empty()) continue;
      int64_t x;
      if (!ParseWhole(s, &x)) {
        return RowErrorStatus(RowError::kBadNumber,
                              "integer column I" + std::to_string(f + 1) + " " + Excerpt(s));
      }
      uint64_t bucket;
      if (x >= 0) {
        // floor(log2(1 + x)); 1 + x cannot overflow a uint64.
        bucket = static_cast<uint64_t>(std::bit_width(static_cast<uint64_t>(x) + 1) - 1);
        if (want_dense) out->dense[f] = Log1p(static_cast<uint64_t>(x));
      } else {
        bucket = kCriteoNegativeBucket;
      }
      if (want_ids) {
        out->ids.push_back(FeatureId(f, bucket));
        out->fields.push_back(f);
      }
    }
    const uint32_t first_categorical = want_ids ? kCriteoIntegerFeatures : 0;
    for (uint32_t c = 0; c < kCriteoCategoricalFeatures; ++c) {
      std::string_view s = cols[1 + kCriteoIntegerFeatures + c];
      if (s.empty()) continue;
      uint32_t v;
      if (s.size() > 8 || !ParseWhole(s, &v, 16)) {
        return RowErrorStatus(RowError::kBadNumber,
                              "categorical column C" + std::to_string(c + 1) + " " + Excerpt(s));
      }
      const uint32_t field = first_categorical + c;
      out->ids.push_back(FeatureId(field, v));
      out->fields.push_back(field);
    }
    out->values.assign(out->ids.size(), 1.0f);
    return OkStatus();
  }

  uint32_t dense_dim() const override {
    return static_cast<uint32_t>(CriteoDenseDim(options_.criteo_integers));
  }
  std::string_view name() const override { return "criteo"; }

 private:
  const ParserOptions options_;
};

// libsvm (with_fields = false) and libffm (with_fields = true).
class SparseTextParser final : public Parser {
 public:
  SparseTextParser(ParserOptions options, bool with_fields)
      : options_(options), with_fields_(with_fields) {}

  Status Parse(std::string_view line, Example* out) const override {
    out->Clear();
    RETURN_IF_ERROR(Prepare(&line, options_));
    const char* data = line.data();
    const size_t n = line.size();
    size_t i = 0;
    bool first = true;
    while (true) {
      // Skip separators, rejecting control bytes.
      while (i < n && (data[i] == ' ' || data[i] == '\t')) ++i;
      if (i >= n) break;
      size_t start = i;
      while (i < n && data[i] != ' ' && data[i] != '\t') {
        unsigned char c = static_cast<unsigned char>(data[i]);
        if (c < 0x20 || c == 0x7f) [[unlikely]]
          return BinaryError(line, i);
        ++i;
      }
      std::string_view token(data + start, i - start);
      if (first) {
        first = false;
        RETURN_IF_ERROR(ParseLabel(token, &out->label));
        continue;
      }
      RETURN_IF_ERROR(ParseFeature(token, out));
    }
    if (first) return RowErrorStatus(RowError::kEmptyLine, "only separators");
    return OkStatus();
  }

  uint32_t dense_dim() const override { return 0; }
  std::string_view name() const override { return with_fields_ ? "libffm" : "libsvm"; }

 private:
  static Status ParseLabel(std::string_view s, float* label) {
    std::string_view digits = s;
    if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
    float v;
    if (!ParseWhole(digits, &v) || !(v == 0 || v == 1 || v == -1)) {
      return RowErrorStatus(RowError::kBadLabel, "label " + Excerpt(s) + ", expected 0/1 or -1/+1");
    }
    *label = v > 0 ? 1.0f : 0.0f;
    return OkStatus();
  }

  Status ParseFeature(std::string_view token, Example* out) const {
    uint32_t field = 0;
    std::string_view rest = token;
    if (with_fields_) {
      size_t colon = rest.find(':');
      if (colon == std::string_view::npos) {
        return RowErrorStatus(RowError::kBadToken, Excerpt(token) + ", expected field:idx:val");
      }
      if (!ParseWhole(rest.substr(0, colon), &field)) {
        return RowErrorStatus(RowError::kBadNumber, "field in " + Excerpt(token));
      }
      rest.remove_prefix(colon + 1);
    }
    size_t colon = rest.find(':');
    if (colon == std::string_view::npos) {
      return RowErrorStatus(
          RowError::kBadToken,
          Excerpt(token) + (with_fields_ ? ", expected field:idx:val" : ", expected idx:val"));
    }
    uint64_t idx;
    float value;
    if (!ParseWhole(rest.substr(0, colon), &idx)) {
      return RowErrorStatus(RowError::kBadNumber, "index in " + Excerpt(token));
    }
    if (!ParseWhole(rest.substr(colon + 1), &value) || !std::isfinite(value)) {
      return RowErrorStatus(RowError::kBadNumber, "value in " + Excerpt(token));
    }
    out->ids.push_back(FeatureId(field, idx));
    out->fields.push_back(field);
    out->values.push_back(value);
    return OkStatus();
  }

  const ParserOptions options_;
  const bool with_fields_;
};

}  // namespace

std::string_view RowErrorName(RowError error) {
  int i = static_cast<int>(error);
  return i >= 0 && i < kNumRowErrors ? kRowErrorNames[i] : "unknown";
}

Status RowErrorStatus(RowError error, std::string_view detail) {
  std::string message(RowErrorName(error));
  message += ": ";
  message += detail;
  return InvalidArgumentError(std::move(message));
}

std::optional<RowError> RowErrorOf(const Status& status) {
  if (status.code() != StatusCode::kInvalidArgument) return std::nullopt;
  std::string_view m = status.message();
  for (int i = 0; i < kNumRowErrors; ++i) {
    std::string_view name = kRowErrorNames[i];
    if (m.size() > name.size() && m.starts_with(name) && m[name.size()] == ':')
      return static_cast<RowError>(i);
  }
  return std::nullopt;
}

StatusOr<CriteoIntegers> ParseCriteoIntegers(std::string_view name) {
  if (name == "both") return CriteoIntegers::kBoth;
  if (name == "dense") return CriteoIntegers::kDense;
  if (name == "buckets") return CriteoIntegers::kBuckets;
  return InvalidArgumentError("int_features '" + std::string(name) +
                              "': expected both, dense or buckets");
}

std::string_view CriteoIntegersName(CriteoIntegers mode) {
  switch (mode) {
    case CriteoIntegers::kDense:
      return "dense";
    case CriteoIntegers::kBuckets:
      return "buckets";
    case CriteoIntegers::kBoth:
      break;
  }
  return "both";
}

int CriteoFieldCount(CriteoIntegers mode) {
  return mode == CriteoIntegers::kDense ? kCriteoCategoricalFeatures
                                        : kCriteoIntegerFeatures + kCriteoCategoricalFeatures;
}

int CriteoDenseDim(CriteoIntegers mode) {
  return mode == CriteoIntegers::kBuckets ? 0 : kCriteoIntegerFeatures;
}

std::unique_ptr<Parser> MakeCriteoParser(ParserOptions options) {
  return std::make_unique<CriteoParser>(options);
}
std::unique_ptr<Parser> MakeLibsvmParser(ParserOptions options) {
  return std::make_unique<SparseTextParser>(options, false);
}
std::unique_ptr<Parser> MakeLibffmParser(ParserOptions options) {
  return std::make_unique<SparseTextParser>(options, true);
}

StatusOr<std::unique_ptr<Parser>> MakeParser(std::string_view format, ParserOptions options) {
  if (format == "criteo") return MakeCriteoParser(options);
  if (format == "libsvm") return MakeLibsvmParser(options);
  if (format == "libffm") return MakeLibffmParser(options);
  return InvalidArgumentError("unknown data format \"" + std::string(format) +
                              "\"; expected criteo, libsvm or libffm");
}

}  // namespace eddy::worker
