// On-disk model versions (docs/model_format.md): VersionWriter writes one
// version into a temporary directory and makes it appear atomically;
// VersionReader opens, checks and decodes one; ListVersions / ApplyRetention /
// ResolveChain / Materialize / pins / DeleteVersion / ExportForServing work on
// a root directory holding many versions.
// Thread-safety: VersionWriter::AddSparse/AddDense may run concurrently; other
// members of a writer or reader need external synchronisation. Free functions
// are thread-compatible; at most one process writes a given root, while pins,
// DeleteVersion and ApplyRetention may come from others (they lock the root).
#ifndef EDDY_MODEL_STORE_MODEL_FORMAT_H_
#define EDDY_MODEL_STORE_MODEL_FORMAT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/proto/model.pb.h"
#include "common/status.h"

namespace eddy::model_store {

// Format version written into manifests and data file headers. Readers refuse
// anything newer.
inline constexpr uint32_t kModelFormatVersion = 1;

using Encoding = proto::Manifest::ValueEncoding;
using TableSchema = proto::Manifest::TableSchema;
using FileEntry = proto::Manifest::FileEntry;
using StreamPosition = proto::Manifest::StreamPosition;

// Rows of one sparse table held by one server. Keys are unique within a shard.
struct SparseShard {
  std::string table;
  uint32_t shard = 0;         // server id
  uint32_t dim = 0;           // floats per key
  uint32_t state_floats = 0;  // optimizer state floats per key
  std::vector<uint64_t> keys;
  std::vector<float> values;         // keys.size() * dim, row-major
  std::vector<float> state;          // keys.size() * state_floats, or empty (no state)
  std::vector<uint64_t> tombstones;  // keys deleted since the parent (deltas only)
};

// The contiguous part [offset, offset + values.size()) of a dense tensor held by
// one server.
struct DenseSlice {
  std::string table;
  uint32_t shard = 0;
  uint64_t offset = 0;        // first element of the tensor held here
  uint32_t state_floats = 0;  // optimizer state floats per value
  std::vector<float> values;
  std::vector<float> state;  // values.size() * state_floats, or empty (no state)
};

struct WriterOptions {
  // fsync every file and directory (turn off only where durability is moot).
  bool sync = true;
  // Test hook: once this many bytes (over all files of the version, manifest
  // included) have been written, writes fail as a full disk would (ENOSPC).
  uint64_t fail_after_bytes = std::numeric_limits<uint64_t>::max();
};

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

// One data file written into a version's temporary directory, possibly by
// another process (a server writes its own shards; the coordinator commits).
struct WrittenShardFile {
  FileEntry entry;  // path, table, shard, rows, tombstones, bytes, crc32c, offset
  bool dense = false;
  uint32_t dim = 0;           // sparse: floats per key
  uint32_t state_floats = 0;  // optimizer state floats per value in the file
  Encoding encoding = proto::Manifest::ENCODING_FLOAT32;
};

struct ShardFileOptions {
  Encoding encoding = proto::Manifest::ENCODING_FLOAT32;  // sparse values
  bool serving = false;                                   // drop optimizer state
  bool delta = false;                                     // tombstones allowed
  WriterOptions writer;
};

// Writes one data file into `dir` (a VersionWriter's temp_dir(), usually in
// another process) exactly as VersionWriter::AddSparse/AddDense would; the
// writer then records it with AddWrittenFile. Errors: InvalidArgument (sizes,
// values the encoding cannot hold), I/O errors naming the path (a partly
// written file is left for the writer's Abort to remove).
StatusOr<WrittenShardFile> WriteShardFile(const std::string& dir, const SparseShard& shard,
                                          const ShardFileOptions& options);
StatusOr<WrittenShardFile> WriteShardFile(const std::string& dir, const DenseSlice& slice,
                                          const ShardFileOptions& options);

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
  explicit VersionWriter(std::unique_ptr<State> state);
  std::unique_ptr<State> s_;
};

struct ReadOptions {
  // Check the file's CRC32C against the manifest while decoding. Header and
  // bounds are validated either way.
  bool verify_checksum = true;
};

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

// "v000000000042": the directory name of a committed version.
std::string VersionDirName(uint64_t version);

// Committed versions under `root`, ascending. Temporary directories and names
// that are not canonical version names are ignored. NotFound if `root` is absent.
StatusOr<std::vector<uint64_t>> ListVersions(const std::string& root);

struct RetentionOptions {
  int keep_full = 2;  // newest full versions to keep (>= 1)
  // Temporary directories of a version <= the newest committed one are always
  // stale; others only once untouched for this long (a writer may own them).
  std::chrono::seconds stale_temp_age{3600};
};

// Keeps the newest `keep_full` full versions, every delta whose parent chain
// leads to one of them, and every pinned version with its chain; deletes other
// committed versions (each first renamed out of sight, newest first, so no
// remaining delta loses its parent) and stale temporary directories. Versions
// whose manifest cannot be read are kept if newer than the oldest kept full
// version. With no full version nothing committed is deleted.
Status ApplyRetention(const std::string& root, const RetentionOptions& options);
Status ApplyRetention(const std::string& root, int keep_full);

// Pins (docs/model_format.md, "Pins and deleting one version"): a pinned
// version is never deleted, neither by ApplyRetention nor by DeleteVersion, and
// neither is any version in its chain. A pin is an empty file
// `<root>/pins/v<version>`; pin, unpin, delete and retention serialize on an
// flock(2) of the root directory, so a pin taken by one process is seen by
// another process's retention.

// Pins committed version `version` (durably: the pin file and its directory
// are fsynced). Pinning a pinned version is a no-op. Errors: NotFound for a
// version that is not committed (naming the versions there), I/O errors.
Status PinVersion(const std::string& root, uint64_t version);

// Removes the pin of `version`. NotFound (naming the pinned versions) if it is
// not pinned; I/O errors.
Status UnpinVersion(const std::string& root, uint64_t version);

// Pinned versions, ascending. A pin may outlive its version only if the
// version directory was removed by hand. NotFound if `root` is absent.
StatusOr<std::vector<uint64_t>> ListPins(const std::string& root);

// Deletes committed version `version`: renames it out of sight
// (`.v<version>.del-<random>`), fsyncs the root, then removes it. Errors:
// NotFound (not committed, naming the versions there); FailedPrecondition when
// it is pinned, when the chain of another committed version needs it (naming
// those versions), or when a newer version's manifest cannot be read (it might
// need it); I/O errors (a version renamed but not fully removed is finished by
// the next ApplyRetention).
Status DeleteVersion(const std::string& root, uint64_t version);

// The versions to load, in order, to materialize `version`: a full version,
// then the deltas leading to `version`. Errors: NotFound for a version that is
// not committed (naming its neighbours), a missing delta inside the chain, or
// a missing full version at its root; DataLoss for inconsistent manifests.
StatusOr<std::vector<uint64_t>> ResolveChain(const std::string& root, uint64_t version);

// Rows of one sparse table in memory: key -> dim values (+ state floats).
// Not thread-safe.
class SparseRows {
 public:
  SparseRows() = default;
  SparseRows(uint32_t dim, uint32_t state_floats) : dim_(dim), state_floats_(state_floats) {}

  uint32_t dim() const { return dim_; }
  uint32_t state_floats() const { return state_floats_; }
  size_t size() const { return keys_.size(); }

  // Inserts or replaces `key`. Requires values.size() == dim() and
  // state.size() == state_floats() (or state empty: zeros).
  void Upsert(uint64_t key, std::span<const float> values, std::span<const float> state);
  // Makes room for `rows` keys in total (no rehashing or regrowth up to it).
  void Reserve(size_t rows);
  // Returns whether `key` was present.
  bool Erase(uint64_t key);
  // The key's values / state, or empty spans if absent. Valid until the next change.
  std::span<const float> Find(uint64_t key) const;
  std::span<const float> FindState(uint64_t key) const;
  // Present keys, in no particular order.
  const std::vector<uint64_t>& keys() const { return keys_; }

 private:
  uint32_t dim_ = 0;
  uint32_t state_floats_ = 0;
  std::unordered_map<uint64_t, size_t> slot_;
  std::vector<uint64_t> keys_;
  std::vector<float> values_;
  std::vector<float> state_;
};

struct DenseTensor {
  std::vector<float> values;  // product(shape) floats, row-major
  uint32_t state_floats = 0;
  std::vector<float> state;  // values.size() * state_floats
};

// A model version loaded into memory.
struct MaterializedModel {
  proto::Manifest manifest;     // of the last applied version (version 0: empty)
  std::vector<uint64_t> chain;  // applied versions, full first
  std::map<std::string, SparseRows> sparse;
  std::map<std::string, DenseTensor> dense;
};

struct MaterializeOptions {
  bool verify_checksums = true;
  // Files to load (e.g. one server's shards when resuming); null: all.
  std::function<bool(const FileEntry&)> include;
};

// Applies one version to `model`: a full version replaces it; a delta requires
// model->manifest.version() == its parent, erases its tombstones, then upserts
// its rows and overwrites its dense slices. Tables absent from the version's
// schema are dropped. On error *model is partially updated: apply to a copy
// where a consistent model must stay visible.
Status ApplyVersion(const VersionReader& reader, MaterializedModel* model,
                    const MaterializeOptions& options = {});

// ResolveChain + ApplyVersion over the chain.
StatusOr<MaterializedModel> Materialize(const std::string& root, uint64_t version,
                                        const MaterializeOptions& options = {});

struct ExportOptions {
  WriterOptions writer;
  bool verify_checksums = true;
  // Write a serving delta instead of a full version: `version` must be a delta
  // whose parent was already exported to the destination; its rows are
  // re-encoded from the training delta's own files (no materialization).
  bool delta = false;
  // Sparse shards materialized and written at once (memory grows with it).
  int threads = 2;
};

// Writes version `version` of the training root `src_root` to `dst_root` as a
// serving version with the same number: no optimizer state, sparse values in
// `encoding` (dense tensors stay float32), the same tables, stream positions,
// metrics, attributes and creation time. By default it is a full version,
// materialized from the chain shard by shard (each sparse shard's files give
// that shard's rows: keys are assumed to stay on one shard along a chain, as
// Eddy's partitioning does); dense slices follow the layout of the chain's full
// version. Errors: those of Materialize (NotFound, DataLoss) and
// VersionWriter (AlreadyExists, FailedPrecondition for a destination with a
// newer version, InvalidArgument for values the encoding cannot hold, I/O);
// with `delta`, InvalidArgument for a full version and FailedPrecondition when
// the parent is not exported yet. A failed export leaves no version behind.
Status ExportForServing(const std::string& src_root, uint64_t version, const std::string& dst_root,
                        Encoding encoding, const ExportOptions& options = {});

namespace internal {
// IEEE 754 binary16 conversions, round to nearest even (exposed for tests).
uint16_t FloatToHalf(float f);
float HalfToFloat(uint16_t h);
}  // namespace internal

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_MODEL_FORMAT_H_
