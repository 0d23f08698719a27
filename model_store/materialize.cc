#include "model_store/materialize.h"

#include <glog/logging.h>

#include <algorithm>
#include <utility>

#include "model_store/chain.h"
#include "model_store/internal/file_io.h"
#include "model_store/internal/manifest.h"
#include "model_store/version_dir.h"

namespace eddy::model_store {

using internal::DenseElements;
using internal::JoinPath;
using proto::Manifest;

void SparseRows::Upsert(uint64_t key, std::span<const float> values, std::span<const float> state) {
  DCHECK_EQ(values.size(), dim_);
  DCHECK(state.empty() || state.size() == state_floats_);
  auto [it, inserted] = slot_.emplace(key, keys_.size());
  const size_t i = it->second;
  if (inserted) {
    keys_.push_back(key);
    values_.resize(values_.size() + dim_);
    state_.resize(state_.size() + state_floats_);
  }
  std::copy(values.begin(), values.end(), values_.begin() + i * dim_);
  if (state.empty()) {
    std::fill_n(state_.begin() + i * state_floats_, state_floats_, 0.0f);
  } else {
    std::copy(state.begin(), state.end(), state_.begin() + i * state_floats_);
  }
}

void SparseRows::Reserve(size_t rows) {
  slot_.reserve(rows);
  keys_.reserve(rows);
  values_.reserve(rows * dim_);
  state_.reserve(rows * state_floats_);
}

bool SparseRows::Erase(uint64_t key) {
  auto it = slot_.find(key);
  if (it == slot_.end()) return false;
  const size_t i = it->second;
  const size_t last = keys_.size() - 1;
  slot_.erase(it);
  if (i != last) {
    keys_[i] = keys_[last];
    std::copy_n(values_.begin() + last * dim_, dim_, values_.begin() + i * dim_);
    std::copy_n(state_.begin() + last * state_floats_, state_floats_,
                state_.begin() + i * state_floats_);
    slot_[keys_[i]] = i;
  }
  keys_.pop_back();
  values_.resize(values_.size() - dim_);
  state_.resize(state_.size() - state_floats_);
  return true;
}

std::span<const float> SparseRows::Find(uint64_t key) const {
  auto it = slot_.find(key);
  if (it == slot_.end()) return {};
  return std::span(values_).subspan(it->second * dim_, dim_);
}

std::span<const float> SparseRows::FindState(uint64_t key) const {
  auto it = slot_.find(key);
  if (it == slot_.end()) return {};
  return std::span(state_).subspan(it->second * state_floats_, state_floats_);
}

Status ApplyVersion(const VersionReader& reader, MaterializedModel* model,
                    const MaterializeOptions& options) {
  const Manifest& m = reader.manifest();
  const std::string v = "version " + std::to_string(m.version());
  if (m.kind() == Manifest::KIND_FULL) {
    *model = MaterializedModel{};
  } else if (model->manifest.version() != m.parent_version()) {
    return FailedPreconditionError(
        v + " is a delta of version " + std::to_string(m.parent_version()) +
        " but the model is at version " + std::to_string(model->manifest.version()));
  }
  std::map<std::string, SparseRows> sparse;
  std::map<std::string, DenseTensor> dense;
  for (const TableSchema& t : m.tables()) {
    const std::string tn = v + ": table '" + t.name() + "'";
    if (!t.dense()) {
      auto it = model->sparse.find(t.name());
      if (it == model->sparse.end()) {
        sparse.emplace(t.name(), SparseRows(t.dim(), t.state_floats_per_value()));
      } else if (it->second.dim() != t.dim() ||
                 it->second.state_floats() != t.state_floats_per_value()) {
        return DataLossError(tn + " changes dim or state floats from its parent");
      } else {
        sparse.emplace(t.name(), std::move(it->second));
      }
    } else {
      const uint64_t n = DenseElements(t);
      auto it = model->dense.find(t.name());
      if (it == model->dense.end()) {
        DenseTensor d;
        d.values.assign(n, 0.0f);
        d.state_floats = t.state_floats_per_value();
        d.state.assign(n * d.state_floats, 0.0f);
        dense.emplace(t.name(), std::move(d));
      } else if (it->second.values.size() != n ||
                 it->second.state_floats != t.state_floats_per_value()) {
        return DataLossError(tn + " changes shape or state floats from its parent");
      } else {
        dense.emplace(t.name(), std::move(it->second));
      }
    }
  }
  model->sparse = std::move(sparse);
  // Room for the rows this version brings (a delta's mostly replace: a small
  // over-reservation), so that large tables are not rehashed and regrown.
  std::map<std::string, uint64_t> incoming;
  for (const FileEntry& f : m.files()) {
    if (options.include && !options.include(f)) continue;
    if (model->sparse.count(f.table()) > 0) incoming[f.table()] += f.rows();
  }
  for (const auto& [name, n] : incoming) {
    SparseRows& rows = model->sparse.at(name);
    rows.Reserve(rows.size() + n);
  }
  model->dense = std::move(dense);
  const ReadOptions read{.verify_checksum = options.verify_checksums};
  for (const FileEntry& f : m.files()) {
    if (options.include && !options.include(f)) continue;
    if (model->sparse.count(f.table()) > 0) {
      ASSIGN_OR_RETURN(SparseShard shard, reader.ReadSparse(f, read));
      SparseRows& rows = model->sparse.at(f.table());
      for (uint64_t k : shard.tombstones) rows.Erase(k);
      const std::span<const float> values(shard.values), state(shard.state);
      for (size_t i = 0; i < shard.keys.size(); ++i) {
        rows.Upsert(
            shard.keys[i], values.subspan(i * shard.dim, shard.dim),
            state.empty() ? state : state.subspan(i * shard.state_floats, shard.state_floats));
      }
    } else {
      ASSIGN_OR_RETURN(DenseSlice slice, reader.ReadDense(f, read));
      DenseTensor& d = model->dense.at(f.table());
      // In range: the manifest was validated and the header matches the entry.
      std::copy(slice.values.begin(), slice.values.end(), d.values.begin() + slice.offset);
      std::copy(slice.state.begin(), slice.state.end(),
                d.state.begin() + slice.offset * d.state_floats);
    }
  }
  model->manifest = m;
  if (m.kind() == Manifest::KIND_FULL) model->chain.clear();
  model->chain.push_back(m.version());
  return OkStatus();
}

StatusOr<MaterializedModel> Materialize(const std::string& root, uint64_t version,
                                        const MaterializeOptions& options) {
  ASSIGN_OR_RETURN(const std::vector<uint64_t> chain, ResolveChain(root, version));
  MaterializedModel model;
  for (uint64_t v : chain) {
    ASSIGN_OR_RETURN(VersionReader r, VersionReader::Open(JoinPath(root, VersionDirName(v))));
    RETURN_IF_ERROR(ApplyVersion(r, &model, options)
                        .WithContext("materializing version " + std::to_string(version)));
  }
  return model;
}

}  // namespace eddy::model_store
