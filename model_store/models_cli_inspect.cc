// The read-only eddy_models commands: list, show and verify.
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>

#include "model_store/chain.h"
#include "model_store/internal/cli_text.h"
#include "model_store/internal/models_cli_commands.h"
#include "model_store/materialize.h"
#include "model_store/retention.h"
#include "model_store/version_dir.h"
#include "model_store/version_reader.h"

namespace eddy::model_store::internal {
namespace {

namespace fs = std::filesystem;
using proto::Manifest;

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
  int partitions = 0;
  for (const auto& p : m.positions()) {
    rows += p.rows_consumed();
    partitions += p.partitions_size();
  }
  return std::to_string(m.positions_size()) +
         (m.positions_size() == 1 ? " worker, " : " workers, ") + Count(rows) + " rows" +
         (partitions > 0 ? ", " + std::to_string(partitions) + " partitions" : "");
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
         ",\"rows_consumed\":" + std::to_string(p.rows_consumed());
    if (p.partitions_size() > 0) {
      o += ",\"topic\":" + JsonString(p.topic()) + ",\"partitions\":[";
      for (int i = 0; i < p.partitions_size(); ++i) {
        const auto& q = p.partitions(i);
        o += std::string(i == 0 ? "" : ",") + "{\"partition\":" + std::to_string(q.partition()) +
             ",\"offset\":" + std::to_string(q.offset()) +
             ",\"rows_into_message\":" + std::to_string(q.rows_into_message()) +
             ",\"high_watermark\":" + std::to_string(q.high_watermark()) +
             ",\"newest_timestamp_ms\":" + std::to_string(q.newest_timestamp_ms()) + "}";
      }
      o += "]";
    }
    o += "}";
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

}  // namespace

CliResult List(const ModelsCliOptions& o, const std::string& root) {
  auto versions = Versions(root);
  if (!versions.ok()) return CommandError(versions.status());
  auto pins = ListPins(root);
  if (!pins.ok()) return CommandError(pins.status());
  std::vector<VersionSummary> summaries;
  for (uint64_t v : *versions) summaries.push_back(Summarize(root, v, *pins));
  if (o.json) {
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

CliResult Show(const ModelsCliOptions& o, const std::string& root) {
  if (auto f = RequireVersion(o, "show", root)) return f;
  const uint64_t v = o.version;
  const std::string dir = root + "/" + VersionDirName(v);
  auto r = VersionReader::Open(dir);
  if (!r.ok()) return CommandError(r.status());
  const Manifest& m = r->manifest();
  if (o.json) {
    std::string json;
    google::protobuf::util::JsonPrintOptions options;
    options.add_whitespace = true;
    options.preserve_proto_field_names = true;
    if (auto s = google::protobuf::util::MessageToJsonString(m, &json, options); !s.ok()) {
      return CliFailure{kModelsExitError, "cannot print the manifest as JSON: " + s.ToString()};
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
    std::vector<std::vector<std::string>> pos = {{"WORKER", "ROWS CONSUMED", "PARTITIONS"}};
    std::vector<std::vector<std::string>> parts = {
        {"TOPIC", "PARTITION", "OFFSET", "ROWS INTO MSG", "HIGH WATERMARK", "LAG", "NEWEST (ms)"}};
    for (const auto& p : m.positions()) {
      pos.push_back({std::to_string(p.worker()), std::to_string(p.rows_consumed()),
                     p.partitions_size() > 0 ? std::to_string(p.partitions_size()) : "-"});
      for (const auto& q : p.partitions()) {
        const int64_t lag = q.high_watermark() > q.offset() ? q.high_watermark() - q.offset() : 0;
        parts.push_back({p.topic(), std::to_string(q.partition()), std::to_string(q.offset()),
                         std::to_string(q.rows_into_message()),
                         q.high_watermark() < 0 ? "?" : std::to_string(q.high_watermark()),
                         q.high_watermark() < 0 ? "?" : std::to_string(lag),
                         std::to_string(q.newest_timestamp_ms())});
      }
    }
    PrintTable(pos, "  ");
    if (parts.size() > 1) {
      std::printf("\npartitions (where a resume seeks each one):\n");
      PrintTable(parts, "  ");
    }
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

CliResult Verify(const ModelsCliOptions& o, const std::string& root) {
  if (auto f = RequireVersion(o, "verify", root)) return f;
  const uint64_t v = o.version;
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
    return CliFailure{kModelsExitError,
                      "version " + std::to_string(v) +
                          " does not verify: do not serve or resume from it; pick "
                          "another version (eddy_models list --model_dir=" +
                          root + ")"};
  }
  if (o.materialize) {
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

}  // namespace eddy::model_store::internal
