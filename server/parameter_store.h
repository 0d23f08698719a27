// ParameterStore: everything one server holds (its part of every sparse table and
// its slice of every dense tensor) and the handling of data-plane requests.
// Every request is validated before anything is touched: a bad request gets an
// error reply and changes no stored value.
// Thread-safety: Handle() may be called from several threads (tables lock their
// shards); AddTable() must happen before the first Handle(); LoadVersion() and
// Capture() while no request is being applied.
#ifndef EDDY_SERVER_PARAMETER_STORE_H_
#define EDDY_SERVER_PARAMETER_STORE_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/message.h"
#include "common/thread_pool.h"
#include "model_store/format.h"
#include "model_store/version_reader.h"
#include "server/dense_tensor.h"
#include "server/embedding_table.h"

namespace eddy::server {

struct ParameterStoreOptions {
  uint32_t server_id = 0;
  uint32_t num_servers = 1;
  uint32_t num_shards = 64;  // shards per sparse table on this server
  int num_threads = 2;       // threads applying one request
  uint64_t max_request_keys = 1 << 24;
};

struct ParameterStoreStats {
  uint64_t requests = 0;
  uint64_t errors = 0;
  uint64_t keys = 0;
};

struct LoadOptions {
  // Check every data file's CRC32C (computed in pieces on the store's threads,
  // alongside the import).
  bool verify_checksums = true;
  // Rows of one file imported by one task (decoded, filtered, grouped by shard).
  uint64_t rows_per_task = 1 << 16;
};

// What LoadVersion did.
struct LoadedVersion {
  uint64_t version = 0;
  std::vector<uint64_t> chain;  // versions applied: the full one, then deltas
  uint64_t rows = 0;            // sparse rows the store holds afterwards (all tables)
  uint64_t rows_read = 0;       // sparse rows decoded (incl. other servers' and replaced ones)
  uint64_t tombstones = 0;      // rows removed by the deltas' tombstones
  uint64_t files = 0;           // data files read
  uint64_t bytes = 0;           // their bytes
  // The epoch the loaded state has, as StoreCapture::epoch: a delta relative to
  // the loaded version is ExportSince(epoch) (Capture(epoch)).
  uint32_t epoch = 0;
  double seconds = 0;
};

// A copy of everything one server holds, for a model version (the data files
// of its shard).
struct StoreCapture {
  std::vector<model_store::SparseShard> sparse;
  std::vector<model_store::DenseSlice> dense;
  uint64_t rows = 0;  // sparse rows over all tables
  uint64_t tombstones = 0;
  uint64_t evicted = 0;  // rows evicted right after the copy (tombstones of the next delta)
  // The epoch this capture started: the next delta exports rows changed since.
  uint32_t epoch = 0;
};

class ParameterStore {
 public:
  explicit ParameterStore(ParameterStoreOptions options);
  ParameterStore(const ParameterStore&) = delete;
  ParameterStore& operator=(const ParameterStore&) = delete;

  // Creates this server's part of `table`.
  Status AddTable(const proto::TableConfig& table);

  // Applies a PUSH / PULL / PUSH_PULL / PUSH_DENSE / PULL_DENSE request and
  // returns the REPLY (same request_id; status set; values for pulls). With
  // apply = false the request is only validated (the reply says whether it
  // would be accepted) and nothing changes.
  Message Handle(const Message& request, bool apply = true);

  ParameterStoreStats stats() const;
  // Rows, memory and feature admission over every sparse table (locks each
  // table's shards in turn).
  void AddSparseSummary(proto::ServerReport* report) const;

  // Copies this server's dense slices and its sparse rows (with optimizer
  // state): every row when since_epoch is 0 (a full version), else the rows
  // changed since the capture whose StoreCapture::epoch was since_epoch, plus
  // tombstones for rows evicted since (a delta). Then, if evict_before_epochs
  // > 0, evicts rows not changed in the last that many captures (they become
  // the next delta's tombstones). Call while no request is being applied.
  StoreCapture Capture(uint32_t since_epoch = 0, uint32_t evict_before_epochs = 0);
  // The same into *out, reusing its vectors' memory (an earlier capture's):
  // a copy into memory already mapped skips the page faults of a fresh one.
  void CaptureInto(uint32_t since_epoch, uint32_t evict_before_epochs, StoreCapture* out);
  // Replaces everything the store holds by version `version` of the model
  // root `root`: its chain (full version, then deltas) is streamed from the data
  // files straight into the tables, without materializing the model. Sparse rows:
  // of each version, the files of this server's shard when the version was
  // written by as many servers as the job has, else every sparse file; either way
  // only keys this server owns (ServerOfKey) are kept. Files are mapped, decoded
  // (float32, float16, int8) and imported in batches in parallel on the store's
  // threads; a delta first removes its tombstones, then upserts its rows. Dense
  // tensors (small): every file is read, this server's slice kept. Imported rows
  // are stamped with the current epoch, which is then advanced (see
  // LoadedVersion::epoch); tables keep counting epochs across loads, and
  // tombstones recorded before the load are dropped (a delta relative to a
  // version older than the loaded one is no longer possible). Feature admission
  // starts over.
  // Every table of the job must be in every version of the chain with the same
  // kind, dim (shape) and optimizer state (or none: the state then restarts);
  // this is checked before anything changes. Assumes, as Eddy's partitioning
  // does, that a key is in at most one file of a version.
  // Works on a live store: the caller stops applying requests during the call.
  // Errors: NotFound (version, or a version of its chain, not committed),
  // FailedPrecondition naming the mismatching table, DataLoss naming the file
  // (missing, wrong size, bad header, corrupt: CRC32C mismatch), I/O errors.
  // On an error after the checks the store holds part of the version (rows
  // from a corrupt file may have been imported before its checksum failed):
  // the caller must not serve from it (a server fails).
  StatusOr<LoadedVersion> LoadVersion(const std::string& root, uint64_t version,
                                      const LoadOptions& options = {});
  // Puts every table back in its initial state (a rollback before the job's
  // first version): sparse tables empty (rows start again from their
  // deterministic initial values), dense tensors at their initial values with
  // fresh optimizer state. Call while no request is being applied.
  Status ResetToInitial();
  EmbeddingTable* sparse_table(const std::string& name);
  DenseTensor* dense_tensor(const std::string& name);

 private:
  StatusOr<Buffer> HandleSparse(const Message& request, EmbeddingTable* table, bool apply);
  StatusOr<Buffer> HandleDense(const Message& request, DenseTensor* tensor, bool apply);
  // LoadVersion's steps (parameter_store_load.cc).
  Status CheckVersionFits(const model_store::VersionReader& reader) const;
  Status LoadSparseFiles(const model_store::VersionReader& reader, bool first,
                         const LoadOptions& options, LoadedVersion* out);

  ParameterStoreOptions options_;
  ThreadPool pool_;
  std::map<std::string, std::unique_ptr<EmbeddingTable>, std::less<>> sparse_;
  std::map<std::string, std::unique_ptr<DenseTensor>, std::less<>> dense_;
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> errors_{0};
  std::atomic<uint64_t> keys_{0};
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_PARAMETER_STORE_H_
