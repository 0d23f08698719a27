// eddy_models: inspects and manages the model versions under one root directory
// (docs/model_format.md): list, show, verify, pin, unpin, delete, export, prune.
// `eddy_models --help` documents every command and flag.
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/message.h"
#include "common/net.h"
#include "model_store/model_format.h"

// gflags owns a built-in --version flag, so the version number is the flag
// --model_version; main() rewrites --version=N to it before parsing.
DEFINE_string(model_dir, "", "The model root directory (required by every command).");
DEFINE_uint64(model_version, 0,
              "The version a command acts on (show, verify, pin, unpin, delete, export), "
              "given as --version=N.");
DEFINE_bool(json, false, "list, show: print JSON instead of a table.");
DEFINE_string(to, "", "export: the destination root directory (created if absent).");
DEFINE_string(encoding, "float32",
              "export: how sparse values are stored: float32, fp16 or int8 (per-row scale). "
              "Dense tensors stay float32.");
DEFINE_bool(delta, false,
            "export: write a serving delta from the training delta's own files; its parent "
            "must already be exported to --to.");
DEFINE_int32(threads, 2, "export: shards materialized and written at once.");
DEFINE_int32(keep_full, 0, "prune: the number of newest full versions to keep (>= 1).");
DEFINE_string(scheduler, "",
              "snapshot: the running job's scheduler endpoint (tcp://host:port; its log names "
              "it).");
DEFINE_int32(timeout_ms, 10000, "snapshot: how long to wait for the scheduler's answer.");
DEFINE_bool(materialize, false,
            "verify: also decode every file and apply the chain (catches what checksums "
            "cannot, e.g. a manifest that disagrees with a file header).");

namespace eddy::model_store {
namespace {

namespace fs = std::filesystem;
using proto::Manifest;

constexpr int kExitError = 1;
constexpr int kExitUsage = 2;

constexpr char kUsage[] =
    R"(eddy_models: inspect and manage the Eddy model versions under a root directory
(the on-disk format is docs/model_format.md).

Usage: eddy_models <command> --model_dir=DIR [flags]

Commands:
  list                  one line per version: kind, parent, creation time (UTC), type and
                        encoding, rows per table (a delta: +changed/-tombstones), bytes,
                        pin, stream positions, metrics. --json: a JSON array.
  show    --version=N   the manifest of version N in detail: chain, tables, files,
                        positions, metrics, attributes. --json: the manifest as JSON.
  verify  --version=N   checks the size and CRC32C of every file of every version in the
                        chain of N. --materialize also decodes and applies the chain.
  pin     --version=N   protects N and the versions its chain needs from prune and delete.
  unpin   --version=N   removes the pin of N.
  delete  --version=N   deletes N; refused while N is pinned or another version's chain
                        needs it.
  export  --version=N --to=DIR [--encoding=float32|fp16|int8] [--delta] [--threads=T]
                        writes N under DIR as a serving version (no optimizer state) with
                        the same number, tables, positions, metrics and attributes.
  prune   --keep_full=K keeps the K newest full versions, the deltas built on them and
                        every pinned version with its chain; deletes the rest.
  snapshot --scheduler=tcp://HOST:PORT
                        asks a running job's scheduler for a model version now (no
                        --model_dir needed); prints the version number it will commit.
  help                  this text.

Flags:
)";

constexpr char kUsageTail[] = R"(
Exit status: 0 on success, 1 when the command fails (the message says why and what to
do), 2 on a usage error.

Examples:
  eddy_models list --model_dir=/data/ckpt
  eddy_models pin --model_dir=/data/ckpt --version=42
  eddy_models export --model_dir=/data/ckpt --version=42 --to=/data/serving --encoding=fp16
  eddy_models prune --model_dir=/data/ckpt --keep_full=2
)";

// A command's failure: what to print and the exit code.
struct Failure {
  int code;
  std::string message;
};

Failure UsageError(std::string m) { return {kExitUsage, std::move(m)}; }
Failure CommandError(const Status& s) { return {kExitError, s.message()}; }

// ---------------------------------------------------------------------------
// Formatting.

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

std::string Number(double v, const char* format = "%.4f") {
  char buf[64];
  std::snprintf(buf, sizeof(buf), format, v);
  return buf;
}

std::string ShortEncoding(int e) {
  switch (e) {
    case Manifest::ENCODING_FLOAT32:
      return "f32";
    case Manifest::ENCODING_FLOAT16:
      return "fp16";
    case Manifest::ENCODING_INT8_ROW_SCALE:
      return "int8";
    default:
      return "?";
  }
}

std::string LongEncoding(int e) {
  switch (e) {
    case Manifest::ENCODING_FLOAT32:
      return "float32";
    case Manifest::ENCODING_FLOAT16:
      return "fp16";
    case Manifest::ENCODING_INT8_ROW_SCALE:
      return "int8";
    default:
      return "unknown";
  }
}

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

// Prints rows as columns padded to their widest cell (the last one unpadded).
void PrintTable(const std::vector<std::vector<std::string>>& rows, const std::string& indent = "") {
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

// ---------------------------------------------------------------------------
// What `list` shows of one version.

struct TableRows {
  uint64_t rows = 0;
  uint64_t tombstones = 0;
  bool dense = false;
};

struct VersionSummary {
  uint64_t version = 0;
  std::optional<Manifest> manifest;  // nullopt: unreadable
  std::string error;                 // why it is unreadable
  bool pinned = false;
  uint64_t bytes = 0;                     // data files + manifest
  std::map<std::string, TableRows> rows;  // in schema order below
  std::vector<std::string> table_order;
};

VersionSummary Summarize(const std::string& root, uint64_t v, const std::vector<uint64_t>& pins) {
  VersionSummary s;
  s.version = v;
  s.pinned = std::binary_search(pins.begin(), pins.end(), v);
  const std::string dir = root + "/" + VersionDirName(v);
  auto r = VersionReader::Open(dir);
  if (!r.ok()) {
    s.error = r.status().message();
    return s;
  }
  s.manifest = r->manifest();
  std::error_code ec;
  const auto manifest_bytes = fs::file_size(dir + "/manifest.pb", ec);
  if (!ec) s.bytes += manifest_bytes;
  for (const auto& t : s.manifest->tables()) {
    s.table_order.push_back(t.name());
    s.rows[t.name()].dense = t.dense();
  }
  for (const auto& f : s.manifest->files()) {
    s.bytes += f.bytes();
    TableRows& t = s.rows[f.table()];
    t.rows += f.rows();
    t.tombstones += f.tombstones();
  }
  return s;
}

std::string EncodingsOf(const Manifest& m) {
  std::vector<std::string> encodings;
  for (const auto& t : m.tables()) {
    if (t.dense()) continue;
    const std::string e = ShortEncoding(t.value_encoding());
    if (std::find(encodings.begin(), encodings.end(), e) == encodings.end()) {
      encodings.push_back(e);
    }
  }
  return encodings.empty() ? "f32" : Join(encodings, "/");
}

std::string RowsText(const VersionSummary& s) {
  std::vector<std::string> parts;
  const bool delta = s.manifest->kind() == Manifest::KIND_DELTA;
  for (const std::string& name : s.table_order) {
    const TableRows& t = s.rows.at(name);
    std::string p = name + "=";
    if (delta) {
      p += "+" + Count(t.rows);
      if (t.tombstones > 0) p += "/-" + Count(t.tombstones);
    } else {
      p += Count(t.rows);
    }
    parts.push_back(p);
  }
  return Join(parts, " ");
}

std::string PositionsText(const Manifest& m) {
  if (m.positions_size() == 0) return "-";
  uint64_t rows = 0;
  for (const auto& p : m.positions()) rows += p.rows_consumed();
  return std::to_string(m.positions_size()) +
         (m.positions_size() == 1 ? " worker, " : " workers, ") + Count(rows) + " rows";
}

std::vector<std::pair<std::string, double>> SortedMetrics(const Manifest& m) {
  std::vector<std::pair<std::string, double>> out(m.metrics().begin(), m.metrics().end());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::pair<std::string, std::string>> SortedAttributes(const Manifest& m) {
  std::vector<std::pair<std::string, std::string>> out(m.attributes().begin(),
                                                       m.attributes().end());
  std::sort(out.begin(), out.end());
  return out;
}

std::string MetricsText(const Manifest& m) {
  std::vector<std::string> parts;
  for (const auto& [k, v] : SortedMetrics(m)) parts.push_back(k + "=" + Number(v));
  return parts.empty() ? "-" : Join(parts, " ");
}

std::string SummaryJson(const VersionSummary& s) {
  std::string o = "{\"version\":" + std::to_string(s.version);
  o += ",\"pinned\":" + std::string(s.pinned ? "true" : "false");
  if (!s.manifest) return o + ",\"error\":" + JsonString(s.error) + "}";
  const Manifest& m = *s.manifest;
  o += ",\"kind\":" + JsonString(m.kind() == Manifest::KIND_FULL ? "full" : "delta");
  o += ",\"parent\":" + std::to_string(m.parent_version());
  o += ",\"base\":" + std::to_string(m.base_version());
  o += ",\"created_unix_ms\":" + std::to_string(m.created_unix_ms());
  o += ",\"created_utc\":" + JsonString(Utc(m.created_unix_ms()));
  o += ",\"serving\":" + std::string(m.serving() ? "true" : "false");
  o += ",\"bytes\":" + std::to_string(s.bytes);
  o += ",\"files\":" + std::to_string(m.files_size());
  o += ",\"tables\":{";
  bool first = true;
  for (const auto& t : m.tables()) {
    const TableRows& r = s.rows.at(t.name());
    o += std::string(first ? "" : ",") + JsonString(t.name()) + ":{";
    o += "\"dense\":" + std::string(t.dense() ? "true" : "false");
    o += ",\"encoding\":" + JsonString(LongEncoding(t.value_encoding()));
    o += ",\"rows\":" + std::to_string(r.rows);
    o += ",\"tombstones\":" + std::to_string(r.tombstones) + "}";
    first = false;
  }
  o += "},\"positions\":[";
  first = true;
  for (const auto& p : m.positions()) {
    o += std::string(first ? "" : ",") + "{\"worker\":" + std::to_string(p.worker()) +
         ",\"rows_consumed\":" + std::to_string(p.rows_consumed()) + "}";
    first = false;
  }
  o += "],\"metrics\":{";
  first = true;
  for (const auto& [k, v] : SortedMetrics(m)) {
    o += std::string(first ? "" : ",") + JsonString(k) + ":" + JsonNumber(v);
    first = false;
  }
  o += "},\"attributes\":{";
  first = true;
  for (const auto& [k, v] : SortedAttributes(m)) {
    o += std::string(first ? "" : ",") + JsonString(k) + ":" + JsonString(v);
    first = false;
  }
  return o + "}}";
}

// ---------------------------------------------------------------------------
// Commands. Each returns nullopt on success.

using Result = std::optional<Failure>;

// The committed versions, or a failure that says how to fix --model_dir.
StatusOr<std::vector<uint64_t>> Versions(const std::string& root) {
  auto v = ListVersions(root);
  if (!v.ok() && v.status().code() == StatusCode::kNotFound) {
    return NotFoundError(v.status().message() + "; check --model_dir");
  }
  return v;
}

// Checks that --version names a committed version.
Result RequireVersion(const std::string& command, const std::string& root) {
  auto versions = Versions(root);
  if (!versions.ok()) return CommandError(versions.status());
  const uint64_t v = FLAGS_model_version;
  if (v == 0) {
    return UsageError(command + " needs --version=N; versions under " + root + ": " +
                      VersionList(*versions));
  }
  if (!std::binary_search(versions->begin(), versions->end(), v)) {
    return Failure{kExitError, "version " + std::to_string(v) + " is not committed under " + root +
                                   "; versions there: " + VersionList(*versions) +
                                   " (see eddy_models list --model_dir=" + root + ")"};
  }
  return std::nullopt;
}

Result List(const std::string& root) {
  auto versions = Versions(root);
  if (!versions.ok()) return CommandError(versions.status());
  auto pins = ListPins(root);
  if (!pins.ok()) return CommandError(pins.status());
  std::vector<VersionSummary> summaries;
  for (uint64_t v : *versions) summaries.push_back(Summarize(root, v, *pins));
  if (FLAGS_json) {
    std::string out = "[";
    for (size_t i = 0; i < summaries.size(); ++i) {
      out += std::string(i ? ",\n " : "") + SummaryJson(summaries[i]);
    }
    std::printf("%s]\n", out.c_str());
    return std::nullopt;
  }
  if (summaries.empty()) {
    std::printf("no versions under %s\n", root.c_str());
    return std::nullopt;
  }
  std::vector<std::vector<std::string>> rows = {{"VERSION", "KIND", "PARENT", "CREATED (UTC)",
                                                 "TYPE", "ROWS", "BYTES", "PINNED", "POSITIONS",
                                                 "METRICS"}};
  for (const VersionSummary& s : summaries) {
    if (!s.manifest) {
      rows.push_back({std::to_string(s.version), "?", "?", "?", "?", "?", "?",
                      s.pinned ? "yes" : "", "?", "unreadable: " + s.error});
      continue;
    }
    const Manifest& m = *s.manifest;
    const bool full = m.kind() == Manifest::KIND_FULL;
    rows.push_back({std::to_string(s.version), full ? "full" : "delta",
                    full ? "-" : std::to_string(m.parent_version()), Utc(m.created_unix_ms()),
                    std::string(m.serving() ? "serve " : "train ") + EncodingsOf(m), RowsText(s),
                    Bytes(s.bytes), s.pinned ? "yes" : "", PositionsText(m), MetricsText(m)});
  }
  PrintTable(rows);
  return std::nullopt;
}

Result Show(const std::string& root) {
  if (auto f = RequireVersion("show", root)) return f;
  const uint64_t v = FLAGS_model_version;
  const std::string dir = root + "/" + VersionDirName(v);
  auto r = VersionReader::Open(dir);
  if (!r.ok()) return CommandError(r.status());
  const Manifest& m = r->manifest();
  if (FLAGS_json) {
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.preserve_proto_field_names = true;
    if (auto s = google::protobuf::util::MessageToJsonString(m, &json, options); !s.ok()) {
      return Failure{kExitError, "cannot print the manifest as JSON: " + s.ToString()};
    }
    std::printf("%s", json.c_str());
    return std::nullopt;
  }
  auto pins = ListPins(root);
  const bool pinned = pins.ok() && std::binary_search(pins->begin(), pins->end(), v);
  auto chain = ResolveChain(root, v);
  std::string chain_text;
  if (chain.ok()) {
    std::vector<std::string> parts;
    for (uint64_t c : *chain) parts.push_back(std::to_string(c));
    chain_text = Join(parts, " -> ");
  } else {
    chain_text = "BROKEN: " + chain.status().message();
  }
  const bool full = m.kind() == Manifest::KIND_FULL;
  uint64_t bytes = 0;
  for (const auto& f : m.files()) bytes += f.bytes();
  std::vector<std::vector<std::string>> head = {
      {"version", std::to_string(v)},
      {"kind", full ? "full" : "delta of " + std::to_string(m.parent_version())},
      {"purpose", m.serving() ? "serving (no optimizer state)" : "training checkpoint"},
      {"chain", chain_text},
      {"base", std::to_string(m.base_version())},
      {"created",
       Utc(m.created_unix_ms()) + " UTC (" + std::to_string(m.created_unix_ms()) + " ms)"},
      {"pinned", pinned ? "yes" : "no"},
      {"format", std::to_string(m.format_version())},
      {"directory", dir},
      {"data", std::to_string(m.files_size()) + " files, " + Bytes(bytes)},
  };
  PrintTable(head);
  std::printf("\ntables:\n");
  std::vector<std::vector<std::string>> tables = {
      {"NAME", "KIND", "DIM/SHAPE", "OPTIMIZER", "STATE/VALUE", "ENCODING"}};
  for (const auto& t : m.tables()) {
    std::string dims;
    if (t.dense()) {
      std::vector<std::string> d;
      for (uint64_t x : t.shape()) d.push_back(std::to_string(x));
      dims = Join(d, "x");
    } else {
      dims = std::to_string(t.dim());
    }
    tables.push_back({t.name(), t.dense() ? "dense" : "sparse", dims, t.optimizer(),
                      std::to_string(t.state_floats_per_value()),
                      LongEncoding(t.value_encoding())});
  }
  PrintTable(tables, "  ");
  std::printf("\nfiles:\n");
  std::vector<std::vector<std::string>> files = {
      {"PATH", "TABLE", "SHARD", "ROWS", "TOMBSTONES", "OFFSET", "BYTES", "CRC32C"}};
  for (const auto& f : m.files()) {
    char crc[16];
    std::snprintf(crc, sizeof(crc), "%08x", f.crc32c());
    files.push_back({f.path(), f.table(), std::to_string(f.shard()), std::to_string(f.rows()),
                     std::to_string(f.tombstones()), std::to_string(f.offset()),
                     std::to_string(f.bytes()), crc});
  }
  PrintTable(files, "  ");
  std::printf("\npositions:%s\n", m.positions_size() == 0 ? " none" : "");
  if (m.positions_size() > 0) {
    std::vector<std::vector<std::string>> pos = {{"WORKER", "ROWS CONSUMED", "SOURCE STATE"}};
    for (const auto& p : m.positions()) {
      pos.push_back({std::to_string(p.worker()), std::to_string(p.rows_consumed()),
                     std::to_string(p.source_state().size()) + " bytes"});
    }
    PrintTable(pos, "  ");
  }
  std::printf("\nmetrics:%s\n", m.metrics().empty() ? " none" : "");
  for (const auto& [k, val] : SortedMetrics(m)) {
    std::printf("  %s = %s\n", k.c_str(), Number(val, "%.6g").c_str());
  }
  std::printf("\nattributes:%s\n", m.attributes().empty() ? " none" : "");
  for (const auto& [k, val] : SortedAttributes(m)) {
    std::printf("  %s = %s\n", k.c_str(), val.c_str());
  }
  return std::nullopt;
}

Result Verify(const std::string& root) {
  if (auto f = RequireVersion("verify", root)) return f;
  const uint64_t v = FLAGS_model_version;
  auto chain = ResolveChain(root, v);
  if (!chain.ok()) return CommandError(chain.status());
  uint64_t files = 0, bytes = 0;
  bool failed = false;
  std::vector<std::vector<std::string>> rows;
  for (uint64_t c : *chain) {
    auto r = VersionReader::Open(root + "/" + VersionDirName(c));
    if (!r.ok()) {
      rows.push_back({std::to_string(c), "?", "", "", "FAILED: " + r.status().message()});
      failed = true;
      continue;
    }
    uint64_t b = 0;
    for (const auto& f : r->manifest().files()) b += f.bytes();
    const Status s = r->Verify();
    failed |= !s.ok();
    files += r->manifest().files_size();
    bytes += b;
    rows.push_back({std::to_string(c),
                    r->manifest().kind() == Manifest::KIND_FULL ? "full" : "delta",
                    std::to_string(r->manifest().files_size()) + " files", Bytes(b),
                    s.ok() ? "ok" : "FAILED: " + s.message()});
  }
  std::printf("chain of version %llu:\n", static_cast<unsigned long long>(v));
  PrintTable(rows, "  ");
  if (failed) {
    return Failure{kExitError, "version " + std::to_string(v) +
                                   " does not verify: do not serve or resume from it; pick "
                                   "another version (eddy_models list --model_dir=" +
                                   root + ")"};
  }
  if (FLAGS_materialize) {
    const auto start = std::chrono::steady_clock::now();
    auto model = Materialize(root, v);
    if (!model.ok()) return CommandError(model.status());
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::vector<std::string> parts;
    for (const auto& [name, rows_of] : model->sparse) {
      parts.push_back(name + "=" + std::to_string(rows_of.size()) + " rows");
    }
    for (const auto& [name, t] : model->dense) {
      parts.push_back(name + "=" + std::to_string(t.values.size()) + " values");
    }
    std::printf("materialized in %.2f s: %s\n", secs, Join(parts, ", ").c_str());
  }
  std::printf("ok: %zu version(s), %llu files, %s, every checksum matches\n", chain->size(),
              static_cast<unsigned long long>(files), Bytes(bytes).c_str());
  return std::nullopt;
}

Result Pin(const std::string& root, bool pin) {
  const std::string command = pin ? "pin" : "unpin";
  if (pin) {
    if (auto f = RequireVersion(command, root)) return f;
  } else if (FLAGS_model_version == 0) {
    auto pins = ListPins(root);
    return UsageError("unpin needs --version=N; pinned: " +
                      (pins.ok() ? VersionList(*pins) : pins.status().message()));
  }
  const uint64_t v = FLAGS_model_version;
  const Status s = pin ? PinVersion(root, v) : UnpinVersion(root, v);
  if (!s.ok()) return CommandError(s);
  auto pins = ListPins(root);
  std::printf("%s version %llu; pinned now: %s\n", pin ? "pinned" : "unpinned",
              static_cast<unsigned long long>(v), pins.ok() ? VersionList(*pins).c_str() : "?");
  return std::nullopt;
}

Result Delete(const std::string& root) {
  if (auto f = RequireVersion("delete", root)) return f;
  const uint64_t v = FLAGS_model_version;
  const Status s = DeleteVersion(root, v);
  if (!s.ok()) return CommandError(s);
  std::printf("deleted version %llu\n", static_cast<unsigned long long>(v));
  return std::nullopt;
}

Result Export(const std::string& root) {
  if (auto f = RequireVersion("export", root)) return f;
  if (FLAGS_to.empty()) return UsageError("export needs --to=DIR, the serving root to write to");
  auto encoding = ParseEncoding(FLAGS_encoding);
  if (!encoding.ok()) return UsageError(encoding.status().message());
  if (FLAGS_threads < 1) return UsageError("--threads must be >= 1");
  std::error_code ec;
  if (fs::equivalent(root, FLAGS_to, ec) ||
      fs::path(FLAGS_to).lexically_normal() == fs::path(root).lexically_normal()) {
    return UsageError("--to must differ from --model_dir (a root holds one kind of version)");
  }
  ExportOptions options;
  options.delta = FLAGS_delta;
  options.threads = FLAGS_threads;
  const uint64_t v = FLAGS_model_version;
  const auto start = std::chrono::steady_clock::now();
  const Status s = ExportForServing(root, v, FLAGS_to, *encoding, options);
  if (!s.ok()) return CommandError(s);
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  auto r = VersionReader::Open(FLAGS_to + "/" + VersionDirName(v));
  uint64_t bytes = 0;
  if (r.ok()) {
    for (const auto& f : r->manifest().files()) bytes += f.bytes();
  }
  std::printf("exported version %llu to %s as a serving %s (%s): %s in %.2f s\n",
              static_cast<unsigned long long>(v), (FLAGS_to + "/" + VersionDirName(v)).c_str(),
              FLAGS_delta ? "delta" : "full version", LongEncoding(*encoding).c_str(),
              Bytes(bytes).c_str(), secs);
  return std::nullopt;
}

Result Prune(const std::string& root) {
  if (FLAGS_keep_full < 1) {
    return UsageError(
        "prune needs --keep_full=K (K >= 1): the number of newest full versions "
        "to keep");
  }
  auto before = Versions(root);
  if (!before.ok()) return CommandError(before.status());
  const Status s = ApplyRetention(root, FLAGS_keep_full);
  auto after = ListVersions(root);
  if (!after.ok()) return CommandError(after.status());
  std::vector<uint64_t> removed;
  std::set_difference(before->begin(), before->end(), after->begin(), after->end(),
                      std::back_inserter(removed));
  auto pins = ListPins(root);
  std::printf("removed: %s\nkept: %s\npinned: %s\n", VersionList(removed).c_str(),
              VersionList(*after).c_str(), pins.ok() ? VersionList(*pins).c_str() : "?");
  if (!s.ok()) return CommandError(s);
  return std::nullopt;
}

// Asks a running job's scheduler for a version now (SNAPSHOT_NOW on its
// control socket).
Result Snapshot() {
  if (FLAGS_scheduler.empty()) {
    return UsageError("snapshot needs --scheduler=tcp://host:port, the running job's scheduler");
  }
  zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  ConfigureSocket(socket, /*linger_ms=*/0, /*max_message_bytes=*/1 << 20);
  try {
    socket.connect(FLAGS_scheduler);
  } catch (const zmq::error_t& e) {
    return UsageError("--scheduler=" + FLAGS_scheduler + ": " + e.what());
  }
  Message request{MakeHeader(proto::SNAPSHOT_NOW, 1), {}, {}};
  Status sent = SendMessage(socket, request);
  if (!sent.ok()) return CommandError(sent);
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, std::chrono::milliseconds(FLAGS_timeout_ms)) == 0) {
    return CommandError(DeadlineExceededError(
        "no answer from " + FLAGS_scheduler + " within " + std::to_string(FLAGS_timeout_ms) +
        " ms: is the job running, and is this its scheduler endpoint?"));
  }
  auto reply = RecvMessage(socket);
  if (!reply.ok()) return CommandError(reply.status());
  if (reply->header.status_code() != 0) {
    return CommandError(FailedPreconditionError(reply->header.status_message()));
  }
  std::printf("version %lld will be taken (watch the job's log or eddy_models list)\n",
              static_cast<long long>(reply->header.version()));
  return std::nullopt;
}

Result Run(const std::string& command) {
  if (command == "snapshot") return Snapshot();
  if (FLAGS_model_dir.empty()) {
    return UsageError(command + " needs --model_dir=DIR, the model root directory");
  }
  std::string root = FLAGS_model_dir;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  if (command == "list") return List(root);
  if (command == "show") return Show(root);
  if (command == "verify") return Verify(root);
  if (command == "pin") return Pin(root, true);
  if (command == "unpin") return Pin(root, false);
  if (command == "delete") return Delete(root);
  if (command == "export") return Export(root);
  if (command == "prune") return Prune(root);
  return UsageError("unknown command '" + command +
                    "'; commands: list, show, verify, pin, unpin, delete, export, prune, snapshot, "
                    "help");
}

void PrintUsage() {
  std::string flags;
  std::vector<gflags::CommandLineFlagInfo> all;
  gflags::GetAllFlags(&all);
  for (const auto& f : all) {
    if (f.filename != __FILE__) continue;
    std::string name = f.name == "model_version" ? "version" : f.name;
    flags += "  --" + name + " (" + f.type + ", default " +
             (f.default_value.empty() ? "none" : f.default_value) + ")\n      " + f.description +
             "\n";
  }
  std::printf("%s%s%s", kUsage, flags.c_str(), kUsageTail);
}

// gflags reserves --version; accept it as the version number (--model_version).
void RewriteVersionFlag(int argc, char** argv, std::vector<std::string>* storage) {
  storage->reserve(argc);
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--") break;
    for (std::string_view prefix : {"--version", "-version"}) {
      if (a.substr(0, prefix.size()) == prefix &&
          (a.size() == prefix.size() || a[prefix.size()] == '=')) {
        storage->push_back("--model_version" + std::string(a.substr(prefix.size())));
        argv[i] = storage->back().data();
        break;
      }
    }
  }
}

}  // namespace
}  // namespace eddy::model_store

int main(int argc, char** argv) {
  std::vector<std::string> rewritten;
  eddy::model_store::RewriteVersionFlag(argc, argv, &rewritten);
  gflags::SetUsageMessage("eddy_models <command> --model_dir=DIR [flags]; see --help");
  gflags::ParseCommandLineNonHelpFlags(&argc, &argv, /*remove_flags=*/true);
  std::string help;
  if (gflags::GetCommandLineOption("help", &help) && help == "true") {
    eddy::model_store::PrintUsage();
    return 0;
  }
  gflags::HandleCommandLineHelpFlags();  // --helpfull and friends
  FLAGS_logtostderr = true;
  google::InitGoogleLogging(argv[0]);
  if (argc < 2 || std::string_view(argv[1]) == "help") {
    if (argc < 2) {
      std::fprintf(stderr,
                   "eddy_models: error: no command given (list, show, verify, pin, unpin, "
                   "delete, export, prune); eddy_models --help explains them\n");
      return eddy::model_store::kExitUsage;
    }
    eddy::model_store::PrintUsage();
    return 0;
  }
  if (argc > 2) {
    std::fprintf(stderr,
                 "eddy_models: error: unexpected argument '%s' (one command at a time; "
                 "flags are --name=value)\n",
                 argv[2]);
    return eddy::model_store::kExitUsage;
  }
  const std::string command = argv[1];
  if (auto failure = eddy::model_store::Run(command)) {
    std::fprintf(stderr, "eddy_models %s: error: %s\n", command.c_str(), failure->message.c_str());
    if (failure->code == eddy::model_store::kExitUsage) {
      std::fprintf(stderr, "(eddy_models --help lists commands and flags)\n");
    }
    return failure->code;
  }
  return 0;
}
