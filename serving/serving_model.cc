#include "serving/serving_model.h"

#include <algorithm>
#include <set>

namespace eddy::serving {
namespace {

uint64_t DenseSize(const model_store::TableSchema& t) {
  uint64_t n = 1;
  for (uint64_t d : t.shape()) n *= d;
  return n;
}

}  // namespace

uint64_t ServingModel::memory_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, rows] : sparse) n += rows.memory_bytes();
  for (const auto& [name, values] : dense) n += values.capacity() * sizeof(float);
  return n;
}

uint64_t ServingModel::payload_bytes() const {
  uint64_t n = 0;
  for (const auto& [name, rows] : sparse) {
    n += rows.size() * (sizeof(uint64_t) + rows.dim() * sizeof(float));
  }
  for (const auto& [name, values] : dense) n += values.size() * sizeof(float);
  return n;
}

Status ApplyServingVersion(const model_store::VersionReader& reader, ServingModel* model,
                           const model_store::ReadOptions& options) {
  const proto::Manifest& m = reader.manifest();
  const std::string v = "version " + std::to_string(m.version());
  const bool full = m.kind() == proto::Manifest::KIND_FULL;
  if (!full && model->version() != m.parent_version()) {
    return FailedPreconditionError(v + " is a delta of version " +
                                   std::to_string(m.parent_version()) +
                                   " but the model is at version " +
                                   std::to_string(model->version()));
  }
  // Check the schema against what the delta applies to before changing anything.
  if (!full) {
    for (const model_store::TableSchema& t : m.tables()) {
      const std::string tn = v + ": table '" + t.name() + "'";
      if (!t.dense()) {
        auto it = model->sparse.find(t.name());
        if (it != model->sparse.end() && it->second.dim() != t.dim()) {
          return DataLossError(tn + " changes dim from its parent");
        }
      } else {
        auto it = model->dense.find(t.name());
        if (it != model->dense.end() && it->second.size() != DenseSize(t)) {
          return DataLossError(tn + " changes shape from its parent");
        }
      }
    }
  } else {
    *model = ServingModel{};
  }
  // Tables absent from the version's schema are dropped; new ones start empty.
  std::set<std::string> sparse_names, dense_names;
  for (const model_store::TableSchema& t : m.tables()) {
    if (!t.dense()) {
      sparse_names.insert(t.name());
      model->sparse.try_emplace(t.name(), t.dim());
    } else {
      dense_names.insert(t.name());
      model->dense.try_emplace(t.name(), DenseSize(t), 0.0f);
    }
  }
  std::erase_if(model->sparse, [&](const auto& e) { return sparse_names.count(e.first) == 0; });
  std::erase_if(model->dense, [&](const auto& e) { return dense_names.count(e.first) == 0; });
  if (full) {
    // Room for every row of the version at once: no regrowth while loading.
    std::map<std::string, uint64_t> incoming;
    for (const model_store::FileEntry& f : m.files()) {
      if (model->sparse.count(f.table()) > 0) incoming[f.table()] += f.rows();
    }
    for (const auto& [name, n] : incoming) model->sparse.at(name).Reserve(n);
  }
  for (const model_store::FileEntry& f : m.files()) {
    if (auto it = model->sparse.find(f.table()); it != model->sparse.end()) {
      ASSIGN_OR_RETURN(model_store::SparseShard shard, reader.ReadSparse(f, options));
      ServingRows& rows = it->second;
      for (uint64_t k : shard.tombstones) rows.Erase(k);
      const std::span<const float> values(shard.values);
      for (size_t i = 0; i < shard.keys.size(); ++i) {
        rows.Upsert(shard.keys[i], values.subspan(i * shard.dim, shard.dim));
      }
    } else {
      ASSIGN_OR_RETURN(model_store::DenseSlice slice, reader.ReadDense(f, options));
      std::vector<float>& d = model->dense.at(f.table());
      // In range: the manifest was validated and the header matches the entry.
      std::copy(slice.values.begin(), slice.values.end(), d.begin() + slice.offset);
    }
  }
  model->manifest = m;
  return OkStatus();
}

ServingModel ServingModelFromMaterialized(const model_store::MaterializedModel& model) {
  ServingModel out;
  out.manifest = model.manifest;
  for (const auto& [name, rows] : model.sparse) {
    ServingRows& to = out.sparse.try_emplace(name, rows.dim()).first->second;
    to.Reserve(rows.size());
    for (uint64_t key : rows.keys()) to.Upsert(key, rows.Find(key));
  }
  for (const auto& [name, tensor] : model.dense) out.dense[name] = tensor.values;
  return out;
}

void ViewCounter::Add() {
  MutexLock lock(&mu_);
  ++views_;
}

void ViewCounter::Release() {
  MutexLock lock(&mu_);
  if (--views_ == 0) released_.NotifyAll();
}

int ViewCounter::count() const {
  MutexLock lock(&mu_);
  return views_;
}

bool ViewCounter::WaitNone(std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  MutexLock lock(&mu_);
  while (views_ > 0) {
    if (!released_.WaitUntil(&mu_, deadline)) return views_ == 0;
  }
  return true;
}

}  // namespace eddy::serving
