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
