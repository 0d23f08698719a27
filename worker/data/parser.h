// Row parsers: one text line -> one Example. Formats: Criteo TSV, libsvm, libffm.
// A bad row is an error value (never a crash): the Status message starts with the
// RowError name ("bad_number: ..."), which RowErrorOf() recovers.
// Thread-safety: a Parser is stateless after construction; Parse may be called
// from several threads at once with different outputs.
#ifndef EDDY_WORKER_DATA_PARSER_H_
#define EDDY_WORKER_DATA_PARSER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string_view>

#include "common/status.h"
#include "worker/data/row.h"

namespace eddy::worker {

// Why a row was rejected.
enum class RowError : int {
  kWrongColumnCount = 0,  // Criteo: not exactly 40 tab-separated columns
  kBadNumber,             // a number (integer, hex, float, index) does not parse
  kBadLabel,              // label not 0/1 (libsvm/libffm: also -1/+1)
  kBadToken,              // libsvm/libffm: a token is not idx:val / field:idx:val
  kTooLong,               // longer than ParserOptions::max_line_bytes
  kBinary,                // NUL or another control byte (other than tab)
  kEmptyLine,             // nothing on the line
};
inline constexpr int kNumRowErrors = 7;

// "wrong_column_count", "bad_number", ...
std::string_view RowErrorName(RowError error);
// The Status a parser returns for a bad row: InvalidArgument, "<name>: <detail>".
Status RowErrorStatus(RowError error, std::string_view detail);
// The RowError of a status made by RowErrorStatus, or nullopt for any other status.
std::optional<RowError> RowErrorOf(const Status& status);

// How Criteo's integer columns I1..I13 enter a model.
enum class CriteoIntegers {
  kBoth,     // dense log1p inputs and bucket ids (fields 0..12; C1..C26 are 13..38)
  kDense,    // dense log1p inputs only (C1..C26 are fields 0..25)
  kBuckets,  // bucket ids only, no dense inputs (fields as kBoth)
};
// "both" | "dense" | "buckets"; InvalidArgument naming the choices otherwise.
StatusOr<CriteoIntegers> ParseCriteoIntegers(std::string_view name);
std::string_view CriteoIntegersName(CriteoIntegers mode);

struct ParserOptions {
  // Lines longer than this (after stripping "\r") are rejected with kTooLong.
  size_t max_line_bytes = size_t{1} << 20;
  CriteoIntegers criteo_integers = CriteoIntegers::kBoth;
};

class Parser {
 public:
  virtual ~Parser() = default;
  // Parses `line` (without its "\n"; one trailing "\r" is ignored) into `*out`,
  // which is cleared first. Returns OK or a RowErrorStatus; on error *out is
  // unspecified.
  virtual Status Parse(std::string_view line, Example* out) const = 0;
  // Number of dense inputs every parsed Example carries.
  virtual uint32_t dense_dim() const = 0;
  virtual std::string_view name() const = 0;
};

// Criteo TSV: label \t I1..I13 \t C1..C26, exactly 40 columns, label "0" or "1",
// empty column = missing feature (no id). Fields (options.criteo_integers):
// I1..I13 are fields 0..12 and C1..C26 are 13..38, or, with kDense, C1..C26 are
// 0..25 and integers give no ids.
// - Integer x of field f: id FeatureId(f, floor(log2(1 + x))) for x >= 0, and
//   FeatureId(f, kCriteoNegativeBucket) for x < 0 (not with kDense);
//   dense[f] = log(1 + max(x, 0)), 0 when missing (not with kBuckets).
// - Categorical 32-bit hex value v of field f: id FeatureId(f, v).
inline constexpr uint64_t kCriteoNegativeBucket = 0xffffffffULL;
inline constexpr int kCriteoIntegerFeatures = 13;
inline constexpr int kCriteoCategoricalFeatures = 26;
std::unique_ptr<Parser> MakeCriteoParser(ParserOptions options = {});
// A Criteo model's slots per row (fields) and dense inputs under `mode`.
int CriteoFieldCount(CriteoIntegers mode);
int CriteoDenseDim(CriteoIntegers mode);

// libsvm: "label idx:val idx:val ...", separated by spaces or tabs; label 0/1 or
// -1/+1 (-1 becomes 0). id = FeatureId(0, idx), field 0, weight val.
std::unique_ptr<Parser> MakeLibsvmParser(ParserOptions options = {});

// libffm: "label field:idx:val ...": id = FeatureId(field, idx), weight val.
std::unique_ptr<Parser> MakeLibffmParser(ParserOptions options = {});

// By name: "criteo", "libsvm" or "libffm"; InvalidArgument otherwise.
StatusOr<std::unique_ptr<Parser>> MakeParser(std::string_view format, ParserOptions options = {});

}  // namespace eddy::worker

#endif  // EDDY_WORKER_DATA_PARSER_H_
