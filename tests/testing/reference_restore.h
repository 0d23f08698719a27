// MaterializeAndRestore: how a server loaded a model version before
// ParameterStore::LoadVersion, kept as the reference that tests and benchmarks
// compare the streaming load with: the chain is materialized into memory
// (model_store::Materialize; with own_files_only, only the sparse files of this
// server's shard), then the rows of this server's keys are copied into its
// tables one by one, and its slice of every dense tensor.
// Thread-safety: as ParameterStore::LoadVersion (no requests during the call).
#ifndef EDDY_TESTS_TESTING_REFERENCE_RESTORE_H_
#define EDDY_TESTS_TESTING_REFERENCE_RESTORE_H_

#include <set>
#include <span>
#include <string>
#include <vector>

#include "common/partition.h"
#include "common/status.h"
#include "model_store/materialize.h"
#include "server/parameter_store.h"

namespace eddy::testing {

inline Status MaterializeAndRestore(const std::string& root, uint64_t version,
                                    const std::vector<proto::TableConfig>& tables,
                                    uint32_t server_id, uint32_t num_servers, bool own_files_only,
                                    server::ParameterStore* store) {
  model_store::MaterializeOptions load;
  std::set<std::string> dense;
  for (const proto::TableConfig& t : tables) {
    if (t.dense()) dense.insert(t.name());
  }
  if (own_files_only) {
    load.include = [&](const model_store::FileEntry& f) {
      return dense.count(f.table()) > 0 || f.shard() == server_id;
    };
  }
  ASSIGN_OR_RETURN(model_store::MaterializedModel model,
                   model_store::Materialize(root, version, load));
  for (const proto::TableConfig& config : tables) {
    const std::string& name = config.name();
    if (config.dense()) {
      server::DenseTensor* tensor = store->dense_tensor(name);
      const model_store::DenseTensor& t = model.dense.at(name);
      const uint32_t k = tensor->state_floats_per_value();
      std::span<const float> values(t.values.data() + tensor->begin(), tensor->size());
      std::span<const float> state;
      if (t.state_floats == k && k > 0)
        state = std::span(t.state).subspan(tensor->begin() * k, tensor->size() * k);
      RETURN_IF_ERROR(tensor->ImportPerValue(values, state));
      continue;
    }
    server::EmbeddingTable* table = store->sparse_table(name);
    const model_store::SparseRows& rows = model.sparse.at(name);
    const bool with_state = rows.state_floats() == table->state_floats();
    std::vector<uint64_t> keys;
    std::vector<float> weights, state;
    for (uint64_t key : rows.keys()) {
      if (ServerOfKey(key, num_servers) != server_id) continue;
      keys.push_back(key);
      auto w = rows.Find(key);
      weights.insert(weights.end(), w.begin(), w.end());
      if (with_state) {
        auto st = rows.FindState(key);
        state.insert(state.end(), st.begin(), st.end());
      }
    }
    RETURN_IF_ERROR(table->Import(keys, weights, state));
  }
  return OkStatus();
}

}  // namespace eddy::testing

#endif  // EDDY_TESTS_TESTING_REFERENCE_RESTORE_H_
