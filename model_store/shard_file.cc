#include "model_store/shard_file.h"

#include <utility>

#include "model_store/internal/data_file.h"
#include "model_store/internal/encoding.h"
#include "model_store/internal/manifest.h"
#include "model_store/internal/names.h"

namespace eddy::model_store {

using proto::Manifest;

namespace internal {
namespace {

// State floats per value a file gets: none in serving versions or when the
// caller passed no state for a non-empty shard; otherwise as given.
StatusOr<uint32_t> FileStateFloats(bool serving, uint64_t rows, uint32_t state_floats,
                                   size_t state_size, const std::string& what) {
  if (serving) return 0u;
  uint64_t expected = 0;
  if (state_floats > kMaxStateFloats) {
    return InvalidArgumentError(what + ": state_floats " + std::to_string(state_floats) +
                                " is too large");
  }
  if (!CheckedMul(rows, state_floats, &expected)) return InvalidArgumentError(what + ": overflow");
  if (state_size == expected) return state_floats;
  if (state_size == 0) return 0u;
  return InvalidArgumentError(what + ": " + std::to_string(state_size) +
                              " state floats, expected " + std::to_string(expected) + " or none");
}

}  // namespace

ShardContent ContentOf(const SparseShard& shard) {
  return ShardContent{.table = shard.table,
                      .shard = shard.shard,
                      .dense = false,
                      .dim = shard.dim,
                      .offset = 0,
                      .state_floats = shard.state_floats,
                      .keys = shard.keys,
                      .values = shard.values,
                      .state = shard.state,
                      .tombstones = shard.tombstones};
}

ShardContent ContentOf(const DenseSlice& slice) {
  return ShardContent{.table = slice.table,
                      .shard = slice.shard,
                      .dense = true,
                      .dim = 1,
                      .offset = slice.offset,
                      .state_floats = slice.state_floats,
                      .keys = {},
                      .values = slice.values,
                      .state = slice.state,
                      .tombstones = {}};
}

StatusOr<WrittenShardFile> WriteShardInto(const std::string& dir, const ShardContent& c,
                                          Encoding encoding, bool serving, bool delta,
                                          ByteBudget* budget, bool sync,
                                          const std::function<Status()>& claim) {
  const std::string table(c.table);
  const std::string what = "table '" + table + "' shard " + std::to_string(c.shard) +
                           (c.dense ? " (dense)" : " (sparse)");
  if (table.empty()) {
    return InvalidArgumentError(c.dense ? "dense slice without a table name"
                                        : "sparse shard without a table name");
  }
  const uint64_t rows = c.dense ? c.values.size() : c.keys.size();
  if (c.dense) {
    uint64_t end = 0;
    if (!CheckedAdd(c.offset, c.values.size(), &end) || end > kMaxDenseElements) {
      return InvalidArgumentError(what + ": slice is out of range");
    }
  } else {
    if (c.dim == 0 || c.dim > kMaxDim) {
      return InvalidArgumentError(what + ": dim " + std::to_string(c.dim) + " is invalid");
    }
    uint64_t n_values = 0;
    if (!CheckedMul(rows, c.dim, &n_values) || c.values.size() != n_values) {
      return InvalidArgumentError(what + ": " + std::to_string(c.values.size()) + " values for " +
                                  std::to_string(rows) + " keys of dim " + std::to_string(c.dim));
    }
  }
  ASSIGN_OR_RETURN(const uint32_t state_floats,
                   FileStateFloats(serving, rows, c.state_floats, c.state.size(), what));
  const Encoding used = c.dense ? Manifest::ENCODING_FLOAT32 : encoding;
  if (!c.dense) {
    if (!c.tombstones.empty() && !delta) {
      return InvalidArgumentError(what + ": tombstones in a full version");
    }
    RETURN_IF_ERROR(CheckEncodable(c.values, encoding, what));
  }
  if (claim) RETURN_IF_ERROR(claim());

  DataHeader h;
  h.layout = c.dense ? kLayoutDense : kLayoutSparse;
  h.encoding = static_cast<uint8_t>(used);
  h.shard = c.shard;
  h.dim = c.dense ? 1 : c.dim;
  h.state_floats = state_floats;
  h.rows = rows;
  h.tombstones = c.tombstones.size();
  h.offset = c.offset;
  const std::string name = DataFileName(table, c.shard);
  const std::string path = JoinPath(dir, name);
  FileSink out(path, budget, sync);
  RETURN_IF_ERROR(out.Open());
  const auto header = EncodeHeader(h);
  RETURN_IF_ERROR(out.Append(header.data(), header.size()));
  RETURN_IF_ERROR(out.AppendArray(c.keys));
  RETURN_IF_ERROR(WriteValues(&out, c.values, h.dim, used));
  if (state_floats > 0) RETURN_IF_ERROR(out.AppendArray(c.state.first(rows * state_floats)));
  RETURN_IF_ERROR(out.PadTo8());
  RETURN_IF_ERROR(out.AppendArray(c.tombstones));
  RETURN_IF_ERROR(out.Close());
  const auto sections = ComputeSections(h);
  if (!sections || sections->total != out.bytes()) {
    return InternalError("model file " + path + ": wrote " + std::to_string(out.bytes()) +
                         " bytes, layout says otherwise");
  }
  WrittenShardFile written;
  FileEntry& e = written.entry;
  e.set_path(name);
  e.set_table(table);
  e.set_shard(h.shard);
  e.set_rows(h.rows);
  e.set_tombstones(h.tombstones);
  e.set_bytes(out.bytes());
  e.set_crc32c(out.crc());
  e.set_offset(h.offset);
  written.dense = c.dense;
  written.dim = h.dim;
  written.state_floats = state_floats;
  written.encoding = used;
  return written;
}

Status CheckDataHeader(const DataHeader& h, const std::string& path, uint64_t file_size,
                       const FileEntry& entry, const TableSchema& schema) {
  auto bad = [&](const std::string& what) {
    return DataLossError("model file " + path + ": " + what);
  };
  if ((h.layout == kLayoutDense) != schema.dense()) {
    return bad(std::string("is ") + (h.layout == kLayoutDense ? "dense" : "sparse") +
               " but table '" + schema.name() + "' is not");
  }
  if (h.encoding != schema.value_encoding()) {
    return bad("is " + EncodingName(h.encoding) + ", the manifest says " +
               EncodingName(schema.value_encoding()));
  }
  if (!schema.dense() && h.dim != schema.dim()) {
    return bad("dim " + std::to_string(h.dim) + ", table says " + std::to_string(schema.dim()));
  }
  if (h.state_floats != schema.state_floats_per_value()) {
    return bad(std::to_string(h.state_floats) + " state floats per value, table says " +
               std::to_string(schema.state_floats_per_value()));
  }
  if (h.shard != entry.shard() || h.rows != entry.rows() || h.tombstones != entry.tombstones() ||
      h.offset != entry.offset()) {
    return bad("header (shard " + std::to_string(h.shard) + ", rows " + std::to_string(h.rows) +
               ", tombstones " + std::to_string(h.tombstones) + ", offset " +
               std::to_string(h.offset) + ") disagrees with the manifest");
  }
  const auto sections = ComputeSections(h);
  if (!sections || sections->total != file_size) {
    return bad("header describes " +
               (sections ? std::to_string(sections->total) : std::string("an impossible")) +
               " bytes, file has " + std::to_string(file_size));
  }
  return OkStatus();
}

StatusOr<DecodedFile> ReadDataFile(const std::string& dir, const FileEntry& entry,
                                   const TableSchema& schema, const ReadOptions& options) {
  if (!SafeRelativePath(entry.path())) {
    return InvalidArgumentError("file path '" + entry.path() + "' is not relative");
  }
  const std::string path = JoinPath(dir, entry.path());
  auto bad = [&](const std::string& what) {
    return DataLossError("model file " + path + ": " + what);
  };
  ASSIGN_OR_RETURN(FileSource src, FileSource::Open(path, /*must_exist=*/true));
  if (src.size() != entry.bytes()) {
    return bad("has " + std::to_string(src.size()) + " bytes, the manifest says " +
               std::to_string(entry.bytes()));
  }
  std::array<std::byte, kHeaderBytes> raw;
  RETURN_IF_ERROR(src.Read(raw.data(), raw.size()));
  DecodedFile d;
  ASSIGN_OR_RETURN(d.header, DecodeHeader(raw, path));
  const DataHeader& h = d.header;
  RETURN_IF_ERROR(CheckDataHeader(h, path, src.size(), entry, schema));
  // Every array below is bounded by the file size checked above.
  const uint64_t n_values = h.rows * (h.layout == kLayoutSparse ? h.dim : 1);
  if (h.layout == kLayoutSparse) RETURN_IF_ERROR(src.ReadArray(h.rows, &d.keys));
  RETURN_IF_ERROR(ReadValues(&src, n_values, h.rows, h.layout == kLayoutSparse ? h.dim : 1,
                             static_cast<Encoding>(h.encoding), &d.values));
  RETURN_IF_ERROR(src.ReadArray(h.rows * h.state_floats, &d.state));
  RETURN_IF_ERROR(src.SkipPadding());
  RETURN_IF_ERROR(src.ReadArray(h.tombstones, &d.tombstones));
  if (src.pos() != src.size()) return bad("trailing bytes");
  if (options.verify_checksum && src.crc() != entry.crc32c()) {
    return bad("is corrupt: CRC32C mismatch");
  }
  return d;
}

}  // namespace internal

StatusOr<WrittenShardFile> WriteShardFile(const std::string& dir, const SparseShard& shard,
                                          const ShardFileOptions& options) {
  internal::ByteBudget budget(options.writer.fail_after_bytes);
  return internal::WriteShardInto(dir, internal::ContentOf(shard), options.encoding,
                                  options.serving, options.delta, &budget, options.writer.sync, {});
}

StatusOr<WrittenShardFile> WriteShardFile(const std::string& dir, const DenseSlice& slice,
                                          const ShardFileOptions& options) {
  internal::ByteBudget budget(options.writer.fail_after_bytes);
  return internal::WriteShardInto(dir, internal::ContentOf(slice), options.encoding,
                                  options.serving, options.delta, &budget, options.writer.sync, {});
}

}  // namespace eddy::model_store
