#include "model_store/internal/manifest.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include <algorithm>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "model_store/internal/data_file.h"
#include "model_store/internal/encoding.h"

namespace eddy::model_store::internal {

using proto::Manifest;

bool SafeRelativePath(std::string_view p) {
  if (p.empty() || p.front() == '/' || p.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  while (start <= p.size()) {
    size_t end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    const std::string_view part = p.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") return false;
    start = end + 1;
  }
  return true;
}

uint64_t DenseElements(const TableSchema& t) {
  if (t.shape_size() == 0) return 0;
  uint64_t n = 1;
  for (uint64_t d : t.shape()) {
    if (d == 0 || !CheckedMul(n, d, &n) || n > kMaxDenseElements) return 0;
  }
  return n;
}

Status ValidateManifest(const Manifest& m) {
  if (m.format_version() == 0) return InvalidArgumentError("format_version is missing");
  if (m.format_version() > kModelFormatVersion) {
    return FailedPreconditionError("format_version " + std::to_string(m.format_version()) +
                                   " is newer than this reader supports (" +
                                   std::to_string(kModelFormatVersion) + "); upgrade the reader");
  }
  const std::string v = "version " + std::to_string(m.version());
  if (m.version() == 0) return InvalidArgumentError("version is 0");
  if (m.kind() == Manifest::KIND_FULL) {
    if (m.parent_version() != 0) return InvalidArgumentError(v + ": a full version has a parent");
    if (m.base_version() != m.version()) {
      return InvalidArgumentError(v + ": a full version's base_version must be itself");
    }
  } else if (m.kind() == Manifest::KIND_DELTA) {
    if (m.parent_version() == 0 || m.parent_version() >= m.version()) {
      return InvalidArgumentError(v + ": a delta's parent_version " +
                                  std::to_string(m.parent_version()) + " must be an older version");
    }
    if (m.base_version() == 0 || m.base_version() > m.parent_version()) {
      return InvalidArgumentError(v + ": base_version " + std::to_string(m.base_version()) +
                                  " is not at or below parent_version " +
                                  std::to_string(m.parent_version()));
    }
  } else {
    return InvalidArgumentError(v + ": unknown kind " + std::to_string(m.kind()));
  }
  if (m.tables_size() == 0) return InvalidArgumentError(v + " has no tables");
  std::map<std::string, const TableSchema*> tables;
  for (const TableSchema& t : m.tables()) {
    const std::string tn = v + ": table '" + t.name() + "'";
    if (t.name().empty()) return InvalidArgumentError(v + ": a table has an empty name");
    if (!tables.emplace(t.name(), &t).second) return InvalidArgumentError(tn + " is listed twice");
    if (!ValidEncoding(t.value_encoding())) {
      return InvalidArgumentError(tn + " has no valid value_encoding");
    }
    if (t.state_floats_per_value() > kMaxStateFloats) {
      return InvalidArgumentError(tn + ": state_floats_per_value " +
                                  std::to_string(t.state_floats_per_value()) + " is too large");
    }
    if (m.serving() && t.state_floats_per_value() != 0) {
      return InvalidArgumentError(tn + ": a serving version has no optimizer state");
    }
    if (t.dense()) {
      if (DenseElements(t) == 0) return InvalidArgumentError(tn + ": invalid dense shape");
      if (t.value_encoding() != Manifest::ENCODING_FLOAT32) {
        return InvalidArgumentError(tn + ": dense tables are stored as float32");
      }
    } else {
      if (t.dim() == 0 || t.dim() > kMaxDim) {
        return InvalidArgumentError(tn + ": dim " + std::to_string(t.dim()) + " is invalid");
      }
      if (t.shape_size() != 0) return InvalidArgumentError(tn + ": a sparse table has a shape");
    }
  }
  std::set<std::string> paths;
  std::set<std::pair<std::string, uint32_t>> shards;
  // Dense slices per table: (offset, end).
  std::map<std::string, std::vector<std::pair<uint64_t, uint64_t>>> slices;
  for (const FileEntry& f : m.files()) {
    const std::string fn = v + ": file '" + f.path() + "'";
    if (!SafeRelativePath(f.path())) return InvalidArgumentError(fn + " is not a relative path");
    if (f.path() == kManifestName) return InvalidArgumentError(fn + " is the manifest");
    if (!paths.insert(f.path()).second) return InvalidArgumentError(fn + " is listed twice");
    auto t = tables.find(f.table());
    if (t == tables.end()) {
      return InvalidArgumentError(fn + " belongs to unknown table '" + f.table() + "'");
    }
    if (!shards.emplace(f.table(), f.shard()).second) {
      return InvalidArgumentError(fn + ": table '" + f.table() + "' has two files for shard " +
                                  std::to_string(f.shard()));
    }
    if (f.bytes() < kHeaderBytes) return InvalidArgumentError(fn + " is shorter than a header");
    if (t->second->dense()) {
      uint64_t end = 0;
      if (f.tombstones() != 0) return InvalidArgumentError(fn + ": dense file with tombstones");
      if (!CheckedAdd(f.offset(), f.rows(), &end) || end > DenseElements(*t->second)) {
        return InvalidArgumentError(fn + ": slice [" + std::to_string(f.offset()) + ", +" +
                                    std::to_string(f.rows()) + ") is outside the tensor");
      }
      slices[f.table()].emplace_back(f.offset(), end);
    } else {
      if (f.offset() != 0) return InvalidArgumentError(fn + ": sparse file with an offset");
      if (f.tombstones() != 0 && m.kind() != Manifest::KIND_DELTA) {
        return InvalidArgumentError(fn + ": tombstones in a full version");
      }
    }
  }
  for (const auto& [name, table] : tables) {
    if (!table->dense()) continue;
    auto& s = slices[name];
    std::sort(s.begin(), s.end());
    uint64_t covered = 0;
    for (const auto& [begin, end] : s) {
      if (begin == end) continue;  // a server that holds no part of the tensor
      if (begin < covered) {
        return InvalidArgumentError(v + ": dense table '" + name + "' has overlapping slices at " +
                                    std::to_string(begin));
      }
      if (begin > covered && m.kind() == Manifest::KIND_FULL) break;
      covered = end;
    }
    if (m.kind() == Manifest::KIND_FULL && covered != DenseElements(*table)) {
      return InvalidArgumentError(v + ": dense table '" + name + "' is not fully covered (" +
                                  std::to_string(covered) + " of " +
                                  std::to_string(DenseElements(*table)) +
                                  " values from offset 0) in a full version");
    }
  }
  std::set<int32_t> workers;
  for (const StreamPosition& p : m.positions()) {
    if (!workers.insert(p.worker()).second) {
      return InvalidArgumentError(v + ": two stream positions for worker " +
                                  std::to_string(p.worker()));
    }
  }
  return OkStatus();
}

StatusOr<std::string> SerializeDeterministic(const Manifest& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    if (!m.SerializeToCodedStream(&coded)) return InternalError("cannot serialize the manifest");
  }
  return out;
}

}  // namespace eddy::model_store::internal
