// ParameterStore: everything one server holds (its part of every sparse table and
// its slice of every dense tensor) and the handling of data-plane requests.
// Every request is validated before anything is touched: a bad request gets an
// error reply and changes no stored value.
// Thread-safety: Handle() may be called from several threads (tables lock their
// shards); AddTable() must happen before the first Handle().
#ifndef EDDY_SERVER_PARAMETER_STORE_H_
#define EDDY_SERVER_PARAMETER_STORE_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>

#include "common/message.h"
#include "common/thread_pool.h"
#include "model_store/materialize.h"
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
  // Loads a model version: the rows of `model` whose keys belong to this server
  // (whatever the server count that wrote it) and this server's part of every
  // dense tensor. Every table of the job must be in the version with the same
  // shape and optimizer state layout. Errors: FailedPrecondition naming the
  // mismatch. Call before the first request.
  Status Restore(const model_store::MaterializedModel& model);
  EmbeddingTable* sparse_table(const std::string& name);
  DenseTensor* dense_tensor(const std::string& name);

 private:
  StatusOr<Buffer> HandleSparse(const Message& request, EmbeddingTable* table, bool apply);
  StatusOr<Buffer> HandleDense(const Message& request, DenseTensor* tensor, bool apply);

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
