#include "model_store/version_reader.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <vector>

#include "model_store/internal/data_file.h"
#include "model_store/internal/file_io.h"
#include "model_store/internal/manifest.h"
#include "model_store/internal/names.h"

namespace eddy::model_store {

namespace fs = std::filesystem;
using internal::DecodedFile;
using internal::FileSource;
using internal::IoError;
using internal::JoinPath;
using internal::kIoChunk;
using internal::kManifestName;
using internal::kMaxManifestBytes;
using internal::ParseVersionDirName;
using internal::ReadDataFile;
using internal::ValidateManifest;
using proto::Manifest;

StatusOr<VersionReader> VersionReader::Open(std::string dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    if (ec && ec != std::errc::no_such_file_or_directory) return IoError(ec, "stat", dir);
    return NotFoundError("model version directory " + dir + " does not exist");
  }
  const std::string path = JoinPath(dir, kManifestName);
  auto src = FileSource::Open(path, /*must_exist=*/true);
  if (!src.ok()) return src.status();
  if (src->size() == 0) return DataLossError("manifest " + path + " is empty");
  if (src->size() > kMaxManifestBytes) {
    return DataLossError("manifest " + path + " is implausibly large (" +
                         std::to_string(src->size()) + " bytes)");
  }
  std::string bytes(src->size(), '\0');
  RETURN_IF_ERROR(src->Read(bytes.data(), bytes.size()));
  Manifest m;
  if (!m.ParseFromString(bytes)) return DataLossError("manifest " + path + " does not parse");
  Status s = ValidateManifest(m);
  if (!s.ok()) {
    if (s.code() == StatusCode::kFailedPrecondition) return s.WithContext("manifest " + path);
    return DataLossError("manifest " + path + ": " + s.message());
  }
  fs::path normal = fs::path(dir).lexically_normal();
  if (!normal.has_filename()) normal = normal.parent_path();
  if (auto named = ParseVersionDirName(normal.filename().string());
      named && *named != m.version()) {
    return DataLossError("manifest " + path + " describes version " + std::to_string(m.version()) +
                         ", not " + std::to_string(*named));
  }
  return VersionReader(std::move(dir), std::move(m));
}

const TableSchema* VersionReader::FindTable(std::string_view name) const {
  for (const TableSchema& t : manifest_.tables()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

Status VersionReader::Verify() const {
  std::vector<std::byte> buf(kIoChunk);
  for (const FileEntry& f : manifest_.files()) {
    const std::string path = JoinPath(dir_, f.path());
    ASSIGN_OR_RETURN(FileSource src, FileSource::Open(path, /*must_exist=*/true));
    if (src.size() != f.bytes()) {
      return DataLossError("model file " + path + " has " + std::to_string(src.size()) +
                           " bytes, the manifest says " + std::to_string(f.bytes()));
    }
    while (src.pos() < src.size()) {
      RETURN_IF_ERROR(src.Read(buf.data(), std::min<uint64_t>(buf.size(), src.size() - src.pos())));
    }
    if (src.crc() != f.crc32c()) {
      return DataLossError("model file " + path + " is corrupt: CRC32C mismatch");
    }
  }
  return OkStatus();
}

namespace {

// Decodes `entry` of `reader`, whose table must exist and be dense or sparse
// as asked (InvalidArgument otherwise).
StatusOr<DecodedFile> ReadFileOf(const VersionReader& reader, const FileEntry& entry, bool dense,
                                 const ReadOptions& options) {
  const TableSchema* schema = reader.FindTable(entry.table());
  if (schema == nullptr) {
    return InvalidArgumentError("version " + std::to_string(reader.version()) + " has no table '" +
                                entry.table() + "'");
  }
  if (schema->dense() != dense) {
    return InvalidArgumentError("table '" + entry.table() + "' is " +
                                (schema->dense() ? "dense" : "sparse"));
  }
  return ReadDataFile(reader.dir(), entry, *schema, options);
}

}  // namespace

StatusOr<SparseShard> VersionReader::ReadSparse(const FileEntry& entry,
                                                const ReadOptions& options) const {
  ASSIGN_OR_RETURN(DecodedFile d, ReadFileOf(*this, entry, /*dense=*/false, options));
  SparseShard s;
  s.table = entry.table();
  s.shard = d.header.shard;
  s.dim = d.header.dim;
  s.state_floats = d.header.state_floats;
  s.keys = std::move(d.keys);
  s.values = std::move(d.values);
  s.state = std::move(d.state);
  s.tombstones = std::move(d.tombstones);
  return s;
}

StatusOr<DenseSlice> VersionReader::ReadDense(const FileEntry& entry,
                                              const ReadOptions& options) const {
  ASSIGN_OR_RETURN(DecodedFile d, ReadFileOf(*this, entry, /*dense=*/true, options));
  DenseSlice s;
  s.table = entry.table();
  s.shard = d.header.shard;
  s.offset = d.header.offset;
  s.state_floats = d.header.state_floats;
  s.values = std::move(d.values);
  s.state = std::move(d.state);
  return s;
}

}  // namespace eddy::model_store
