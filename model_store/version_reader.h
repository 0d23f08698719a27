// VersionReader: opens one committed model version, validates its manifest and
// decodes its data files.
// Thread-safety: a value; const members may run concurrently.
#ifndef EDDY_MODEL_STORE_VERSION_READER_H_
#define EDDY_MODEL_STORE_VERSION_READER_H_

#include <string>
#include <string_view>
#include <utility>

#include "common/proto/model.pb.h"
#include "common/status.h"
#include "model_store/format.h"

namespace eddy::model_store {

// One committed version: its manifest (validated on Open) and decoding of its
// files. A value; copyable.
class VersionReader {
 public:
  // Reads and validates `<dir>/manifest.pb`. Errors: NotFound (no directory),
  // FailedPrecondition (written by a newer format), DataLoss (missing or
  // inconsistent manifest).
  static StatusOr<VersionReader> Open(std::string dir);

  const proto::Manifest& manifest() const { return manifest_; }
  const std::string& dir() const { return dir_; }
  uint64_t version() const { return manifest_.version(); }
  // The schema of table `name`, or nullptr.
  const TableSchema* FindTable(std::string_view name) const;

  // Checks every file's presence, size and CRC32C. DataLoss names the file.
  Status Verify() const;

  // Decodes one file of this version (values dequantized to float). A file
  // that disagrees with `entry` or its schema, or is truncated or corrupt, is
  // DataLoss naming the file; memory use is bounded by the file's real size.
  StatusOr<SparseShard> ReadSparse(const FileEntry& entry, const ReadOptions& options = {}) const;
  StatusOr<DenseSlice> ReadDense(const FileEntry& entry, const ReadOptions& options = {}) const;

 private:
  VersionReader(std::string dir, proto::Manifest manifest)
      : dir_(std::move(dir)), manifest_(std::move(manifest)) {}
  std::string dir_;
  proto::Manifest manifest_;
};

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_VERSION_READER_H_
