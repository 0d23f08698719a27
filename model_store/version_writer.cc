#include "model_store/version_writer.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <optional>
#include <set>
#include <utility>

#include "common/mutex.h"
#include "model_store/internal/data_file.h"
#include "model_store/internal/encoding.h"
#include "model_store/internal/file_io.h"
#include "model_store/internal/manifest.h"
#include "model_store/internal/names.h"
#include "model_store/version_dir.h"
#include "model_store/version_reader.h"

namespace eddy::model_store {

namespace fs = std::filesystem;
using internal::AlreadyExistsError;
using internal::ByteBudget;
using internal::DataFileName;
using internal::EncodingName;
using internal::FileSink;
using internal::IoError;
using internal::JoinPath;
using internal::kManifestName;
using internal::RenameNoReplace;
using internal::RootLock;
using internal::SafeRelativePath;
using internal::SerializeDeterministic;
using internal::SyncDir;
using internal::ValidateManifest;
using internal::ValidEncoding;
using proto::Manifest;

struct VersionWriter::State {
  State(std::string root_, std::string temp_, uint64_t version_, uint64_t parent_, uint64_t base_,
        bool serving_, Encoding encoding_, const WriterOptions& options_)
      : root(std::move(root_)),
        temp(std::move(temp_)),
        version(version_),
        parent(parent_),
        base(base_),
        serving(serving_),
        encoding(encoding_),
        options(options_),
        budget(options_.fail_after_bytes) {}

  // Records the first failure and removes the temporary directory.
  Status Fail(Status s) {
    MutexLock l(&mu);
    if (failure.ok()) failure = s;
    RemoveTempLocked();
    return s;
  }
  void RemoveTempLocked() REQUIRES(mu) {
    if (removed || committed) return;
    removed = true;
    std::error_code ec;
    fs::remove_all(temp, ec);
    if (ec) LOG(WARNING) << "cannot remove " << temp << ": " << ec.message();
  }
  Status UsableLocked() REQUIRES(mu) {
    const std::string what = "writer of version " + std::to_string(version);
    if (committed) return FailedPreconditionError(what + " has committed");
    if (!failure.ok()) return FailedPreconditionError(what + " failed: " + failure.ToString());
    if (removed) return FailedPreconditionError(what + " was aborted");
    return OkStatus();
  }
  // Claims (table, shard) before writing its file.
  Status Claim(const std::string& table, uint32_t shard) {
    MutexLock l(&mu);
    RETURN_IF_ERROR(UsableLocked());
    if (!claimed.emplace(table, shard).second) {
      return AlreadyExistsError("version " + std::to_string(version) + ": table '" + table +
                                "' shard " + std::to_string(shard) + " was already added");
    }
    return OkStatus();
  }
  Status Record(WrittenShardFile f) {
    MutexLock l(&mu);
    RETURN_IF_ERROR(UsableLocked());
    files.push_back(std::move(f));
    return OkStatus();
  }

  const std::string root;
  const std::string temp;
  const uint64_t version;
  const uint64_t parent;
  const uint64_t base;
  const bool serving;
  const Encoding encoding;
  const WriterOptions options;
  ByteBudget budget;

  Mutex mu;
  std::set<std::pair<std::string, uint32_t>> claimed GUARDED_BY(mu);
  std::vector<WrittenShardFile> files GUARDED_BY(mu);
  Status failure GUARDED_BY(mu);
  bool committed GUARDED_BY(mu) = false;
  bool removed GUARDED_BY(mu) = false;
};

VersionWriter::VersionWriter(std::unique_ptr<State> state) : s_(std::move(state)) {}
VersionWriter::VersionWriter(VersionWriter&&) noexcept = default;
VersionWriter& VersionWriter::operator=(VersionWriter&& o) noexcept {
  if (this != &o) {
    Abort();
    s_ = std::move(o.s_);
  }
  return *this;
}
VersionWriter::~VersionWriter() { Abort(); }

StatusOr<VersionWriter> VersionWriter::Begin(std::string root_dir, uint64_t version,
                                             uint64_t parent, bool serving, Encoding encoding,
                                             const WriterOptions& options) {
  if (root_dir.empty()) return InvalidArgumentError("empty model root directory");
  if (version == 0) return InvalidArgumentError("model version must be > 0");
  if (parent >= version) {
    return InvalidArgumentError("delta version " + std::to_string(version) +
                                " must be newer than its parent " + std::to_string(parent));
  }
  if (!ValidEncoding(encoding)) {
    return InvalidArgumentError("unknown value " + EncodingName(encoding));
  }
  const std::string final_dir = JoinPath(root_dir, VersionDirName(version));
  std::error_code ec;
  fs::create_directories(root_dir, ec);
  if (ec) return IoError(ec, "create directory", root_dir);
  if (fs::exists(final_dir, ec)) {
    return AlreadyExistsError("version " + std::to_string(version) +
                              " already exists: " + final_dir);
  }
  ASSIGN_OR_RETURN(const std::vector<uint64_t> committed, ListVersions(root_dir));
  if (!committed.empty() && committed.back() > version) {
    return FailedPreconditionError("version " + std::to_string(version) +
                                   " is older than version " + std::to_string(committed.back()) +
                                   " committed under " + root_dir +
                                   "; versions are committed in increasing order");
  }
  uint64_t base = version;
  if (parent != 0) {
    const std::string parent_dir = JoinPath(root_dir, VersionDirName(parent));
    auto reader = VersionReader::Open(parent_dir);
    if (!reader.ok()) {
      if (reader.status().code() == StatusCode::kNotFound) {
        return FailedPreconditionError("parent version " + std::to_string(parent) + " of delta " +
                                       std::to_string(version) + " is not committed under " +
                                       root_dir);
      }
      return reader.status().WithContext("parent of delta " + std::to_string(version));
    }
    if (reader->manifest().serving() != serving) {
      return FailedPreconditionError(
          "delta " + std::to_string(version) + (serving ? " (serving)" : " (checkpoint)") +
          " cannot follow version " + std::to_string(parent) +
          (reader->manifest().serving() ? " (serving)" : " (checkpoint)"));
    }
    base = reader->manifest().base_version();
  }
  std::string temp;
  for (int attempt = 0;; ++attempt) {
    temp = internal::HiddenDirPath(root_dir, version, internal::kTempTag);
    if (::mkdir(temp.c_str(), 0755) == 0) break;
    if (errno != EEXIST || attempt >= 8) return IoError(errno, "create directory", temp);
  }
  return VersionWriter(std::make_unique<State>(std::move(root_dir), std::move(temp), version,
                                               parent, base, serving, encoding, options));
}

Status VersionWriter::AddSparse(const SparseShard& shard) {
  return Add(internal::ContentOf(shard));
}

Status VersionWriter::AddDense(const DenseSlice& slice) { return Add(internal::ContentOf(slice)); }

Status VersionWriter::Add(const internal::ShardContent& content) {
  if (!s_) return FailedPreconditionError("moved-from VersionWriter");
  bool claimed = false;
  auto written = internal::WriteShardInto(
      s_->temp, content, s_->encoding, s_->serving, s_->parent != 0, &s_->budget, s_->options.sync,
      [&]() -> Status {
        RETURN_IF_ERROR(s_->Claim(std::string(content.table), content.shard));
        claimed = true;
        return OkStatus();
      });
  if (!written.ok()) return claimed ? s_->Fail(written.status()) : written.status();
  return s_->Record(std::move(*written));
}

Status VersionWriter::AddWrittenFile(const WrittenShardFile& file) {
  if (!s_) return FailedPreconditionError("moved-from VersionWriter");
  const FileEntry& e = file.entry;
  const std::string what = "version " + std::to_string(s_->version) + ": file " + e.path() +
                           " of table '" + e.table() + "' shard " + std::to_string(e.shard());
  if (!SafeRelativePath(e.path()) || e.path() != DataFileName(e.table(), e.shard())) {
    return InvalidArgumentError(what + ": not a data file name of this table and shard");
  }
  if (!file.dense && e.tombstones() > 0 && s_->parent == 0) {
    return InvalidArgumentError(what + ": tombstones in a full version");
  }
  if (s_->serving && file.state_floats != 0) {
    return InvalidArgumentError(what + ": optimizer state in a serving version");
  }
  if (!file.dense && file.encoding != s_->encoding) {
    return InvalidArgumentError(what + ": written as " + EncodingName(file.encoding) +
                                ", the version uses " + EncodingName(s_->encoding));
  }
  std::error_code ec;
  const std::string path = JoinPath(s_->temp, e.path());
  const uintmax_t size = fs::file_size(path, ec);
  if (ec) return IoError(ec, "stat", path);
  if (size != e.bytes()) {
    return DataLossError(what + ": " + std::to_string(size) + " bytes on disk, " +
                         std::to_string(e.bytes()) + " reported");
  }
  RETURN_IF_ERROR(s_->Claim(e.table(), e.shard()));
  return s_->Record(WrittenShardFile{e, file.dense, file.dense ? 1 : file.dim, file.state_floats,
                                     file.dense ? Manifest::ENCODING_FLOAT32 : file.encoding});
}

Status VersionWriter::Commit(const VersionInfo& info) {
  if (!s_) return FailedPreconditionError("moved-from VersionWriter");
  std::vector<WrittenShardFile> files;
  {
    MutexLock l(&s_->mu);
    RETURN_IF_ERROR(s_->UsableLocked());
    files = s_->files;
  }
  const std::string v = "version " + std::to_string(s_->version);
  Manifest m;
  m.set_format_version(kModelFormatVersion);
  m.set_version(s_->version);
  m.set_parent_version(s_->parent);
  m.set_base_version(s_->base);
  m.set_kind(s_->parent == 0 ? Manifest::KIND_FULL : Manifest::KIND_DELTA);
  m.set_created_unix_ms(info.created_unix_ms != 0
                            ? info.created_unix_ms
                            : std::chrono::duration_cast<std::chrono::milliseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count());
  m.set_serving(s_->serving);
  std::map<std::string, const TableSchema*> schemas;
  for (const TableSchema& t : info.tables) {
    TableSchema* out = m.add_tables();
    *out = t;
    const Encoding used = t.dense() ? Manifest::ENCODING_FLOAT32 : s_->encoding;
    if (out->value_encoding() == Manifest::ENCODING_UNSPECIFIED) out->set_value_encoding(used);
    if (out->value_encoding() != used) {
      return InvalidArgumentError(v + ": table '" + t.name() + "' says " +
                                  EncodingName(t.value_encoding()) + " but was written as " +
                                  EncodingName(used));
    }
    schemas.emplace(t.name(), out);
  }
  std::sort(files.begin(), files.end(), [](const WrittenShardFile& a, const WrittenShardFile& b) {
    if (a.entry.table() != b.entry.table()) return a.entry.table() < b.entry.table();
    return a.entry.shard() < b.entry.shard();
  });
  for (const WrittenShardFile& f : files) {
    const std::string fn =
        v + ": file of table '" + f.entry.table() + "' shard " + std::to_string(f.entry.shard());
    auto it = schemas.find(f.entry.table());
    if (it == schemas.end()) return InvalidArgumentError(fn + " has no table schema");
    const TableSchema& t = *it->second;
    if (t.dense() != f.dense) {
      return InvalidArgumentError(fn + " was added as " + (f.dense ? "dense" : "sparse") +
                                  " but the schema says otherwise");
    }
    if (!f.dense && t.dim() != f.dim) {
      return InvalidArgumentError(fn + " has dim " + std::to_string(f.dim) + ", schema " +
                                  std::to_string(t.dim()));
    }
    if (t.state_floats_per_value() != f.state_floats) {
      return InvalidArgumentError(fn + " has " + std::to_string(f.state_floats) +
                                  " state floats per value, schema " +
                                  std::to_string(t.state_floats_per_value()));
    }
    *m.add_files() = f.entry;
  }
  for (const StreamPosition& p : info.positions) *m.add_positions() = p;
  for (const auto& [k, val] : info.metrics) (*m.mutable_metrics())[k] = val;
  for (const auto& [k, val] : info.attributes) (*m.mutable_attributes())[k] = val;
  RETURN_IF_ERROR(ValidateManifest(m));
  ASSIGN_OR_RETURN(const std::string bytes, SerializeDeterministic(m));

  // From here on a failure aborts the version.
  const std::string manifest_path = JoinPath(s_->temp, kManifestName);
  FileSink out(manifest_path, &s_->budget, s_->options.sync);
  Status s = out.Open();
  if (s.ok()) s = out.Append(bytes.data(), bytes.size());
  if (s.ok()) s = out.Close();
  if (s.ok() && s_->options.sync) s = SyncDir(s_->temp);
  if (!s.ok()) return s_->Fail(s);
  // A delta must not appear after another process deleted its parent: the
  // check and the rename happen under the root lock DeleteVersion takes.
  std::optional<RootLock> root_lock;
  if (s_->parent != 0) {
    auto lock = RootLock::Acquire(s_->root);
    if (!lock.ok()) return s_->Fail(lock.status());
    root_lock.emplace(std::move(*lock));
    std::error_code pec;
    if (!fs::is_directory(JoinPath(s_->root, VersionDirName(s_->parent)), pec)) {
      return s_->Fail(FailedPreconditionError("parent version " + std::to_string(s_->parent) +
                                              " of delta " + std::to_string(s_->version) +
                                              " was deleted before the delta was committed"));
    }
  }
  MutexLock l(&s_->mu);
  RETURN_IF_ERROR(s_->UsableLocked());
  const std::string final_dir = JoinPath(s_->root, VersionDirName(s_->version));
  if (const int err = RenameNoReplace(s_->temp, final_dir); err != 0) {
    Status rs = IoError(err, "rename " + s_->temp + " to", final_dir);
    if (s_->failure.ok()) s_->failure = rs;
    s_->RemoveTempLocked();
    return rs;
  }
  s_->committed = true;
  if (s_->options.sync) {
    Status ds = SyncDir(s_->root);
    if (!ds.ok()) {
      return ds.WithContext(v + " is visible at " + final_dir + " but may not be durable");
    }
  }
  return OkStatus();
}

void VersionWriter::Abort() {
  if (!s_) return;
  MutexLock l(&s_->mu);
  s_->RemoveTempLocked();
}

const std::string& VersionWriter::temp_dir() const { return s_->temp; }

std::string VersionWriter::final_dir() const {
  return JoinPath(s_->root, VersionDirName(s_->version));
}

}  // namespace eddy::model_store
