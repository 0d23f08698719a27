// VersionWriter: writes one model version into a temporary directory under a
// root and makes it appear atomically on Commit.
// Thread-safety: AddSparse/AddDense/AddWrittenFile may run concurrently; Commit
// and Abort need external synchronisation. One process writes a given root.
#ifndef EDDY_MODEL_STORE_VERSION_WRITER_H_
#define EDDY_MODEL_STORE_VERSION_WRITER_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "model_store/format.h"
#include "model_store/shard_file.h"

namespace eddy::model_store {

namespace internal {
struct ShardContent;
}  // namespace internal

// What Commit adds to the manifest besides the files.
struct VersionInfo {
  // One per table. value_encoding may be left unspecified: the writer fills in
  // the encoding it used; state_floats_per_value must match the files.
  std::vector<TableSchema> tables;
  std::vector<StreamPosition> positions;
  std::map<std::string, double> metrics;
  std::map<std::string, std::string> attributes;  // Manifest.attributes
  int64_t created_unix_ms = 0;                    // 0: now
};

// Writes one version under `root_dir`: data files go to a hidden temporary
// directory, Commit writes the manifest and renames the directory to
// `<root>/v<version, 12 digits>`, so readers see the whole version or nothing.
// Any I/O error (the Status names the path) removes the temporary directory;
// committed versions are never touched. Destroying an uncommitted writer aborts.
// Movable, not copyable. AddSparse/AddDense may be called concurrently; Commit
// and Abort must not overlap with them.
class VersionWriter {
 public:
  // Starts version `version` (> 0). `parent` is 0 for a full version, else the
  // committed version (same root, same `serving`) this delta is relative to.
  // `encoding` applies to sparse values; dense tensors are always float32.
  // `serving` versions carry no optimizer state (state passed in is dropped).
  // Versions are committed in increasing order: `version` must be newer than
  // every committed one. Errors: InvalidArgument (bad numbers), AlreadyExists
  // (version committed), FailedPrecondition (an older version, parent missing or
  // of the other kind), I/O errors naming the path.
  static StatusOr<VersionWriter> Begin(std::string root_dir, uint64_t version, uint64_t parent,
                                       bool serving, Encoding encoding,
                                       const WriterOptions& options = {});

  VersionWriter(VersionWriter&&) noexcept;
  VersionWriter& operator=(VersionWriter&&) noexcept;
  VersionWriter(const VersionWriter&) = delete;
  VersionWriter& operator=(const VersionWriter&) = delete;
  ~VersionWriter();

  // Writes and fsyncs one data file. One file per (table, shard). Errors:
  // InvalidArgument (sizes, tombstones in a full version, values that the
  // encoding cannot hold), AlreadyExists (same table and shard twice),
  // FailedPrecondition (writer committed or aborted), I/O errors.
  Status AddSparse(const SparseShard& shard);
  Status AddDense(const DenseSlice& slice);
  // Records a file that WriteShardFile put into temp_dir() (checks its name,
  // kind and size; Commit checks it against the schema). Errors as for
  // AddSparse, DataLoss when the file on disk has another size.
  Status AddWrittenFile(const WrittenShardFile& file);

  // Checks `info` against the files (InvalidArgument, writer stays usable),
  // writes manifest.pb, renames into place and fsyncs the root.
  Status Commit(const VersionInfo& info);

  // Removes the temporary directory. Idempotent; a no-op after Commit.
  void Abort();

  const std::string& temp_dir() const;
  // `<root>/v<version>`, where Commit puts the version.
  std::string final_dir() const;

 private:
  struct State;
  // AddSparse and AddDense: validates, claims (table, shard) and writes the file.
  Status Add(const internal::ShardContent& content);
  explicit VersionWriter(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_VERSION_WRITER_H_
