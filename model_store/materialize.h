// A model version loaded into memory: the rows of sparse tables, dense
// tensors, and applying a version (full or delta) or a whole chain to them.
// Thread-safety: SparseRows and MaterializedModel are not thread-safe; the
// functions are thread-compatible.
#ifndef EDDY_MODEL_STORE_MATERIALIZE_H_
#define EDDY_MODEL_STORE_MATERIALIZE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/proto/model.pb.h"
#include "common/status.h"
#include "model_store/format.h"
#include "model_store/version_reader.h"

namespace eddy::model_store {

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

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_MATERIALIZE_H_
