// ParameterStore::LoadVersion: a model version streamed from its data files
// straight into the store's tables (see parameter_store.h).
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <set>
#include <span>
#include <vector>

#include "common/partition.h"
#include "common/table_config.h"
#include "model_store/chain.h"
#include "model_store/mapped_shard_file.h"
#include "model_store/version_dir.h"
#include "server/parameter_store.h"

namespace eddy::server {
namespace {

using model_store::FileEntry;
using model_store::MappedSparseFile;
using model_store::TableSchema;
using model_store::VersionReader;

uint64_t SchemaElements(const TableSchema& t) {
  uint64_t n = 1;
  for (uint64_t d : t.shape()) n *= d;
  return n;
}

// Per-thread scratch of an import task: decoded values, and the rows of the
// keys this server owns when a file also holds other servers' keys.
struct TaskScratch {
  std::vector<float> decoded;
  std::vector<uint64_t> keys;
  std::vector<float> values;
  std::vector<float> state;
};

// This server's slice of a dense tensor being assembled along the chain.
struct DenseSliceBuffer {
  std::vector<float> values;
  std::vector<float> state;  // per value; used when the versions carry state
  bool with_state = false;
};

}  // namespace

Status ParameterStore::CheckVersionFits(const VersionReader& reader) const {
  const std::string v = "version " + std::to_string(reader.version());
  for (const auto& [name, table] : sparse_) {
    const TableSchema* t = reader.FindTable(name);
    if (t == nullptr || t->dense()) {
      return FailedPreconditionError(v + " has no sparse table '" + name + "'" +
                                     (t ? " (it is dense there)" : ""));
    }
    if (t->dim() != table->dim()) {
      return FailedPreconditionError(v + ": table '" + name + "' has dim " +
                                     std::to_string(t->dim()) + ", the job " +
                                     std::to_string(table->dim()));
    }
    if (t->state_floats_per_value() != table->state_floats() && t->state_floats_per_value() != 0) {
      return FailedPreconditionError(v + ": table '" + name + "' has " +
                                     std::to_string(t->state_floats_per_value()) +
                                     " optimizer state floats per row, the job's optimizer " +
                                     std::to_string(table->state_floats()));
    }
  }
  for (const auto& [name, tensor] : dense_) {
    const TableSchema* t = reader.FindTable(name);
    if (t == nullptr || !t->dense()) {
      return FailedPreconditionError(v + " has no dense tensor '" + name + "'" +
                                     (t ? " (it is sparse there)" : ""));
    }
    if (SchemaElements(*t) != DenseElementCount(tensor->config())) {
      return FailedPreconditionError(v + ": dense tensor '" + name + "' has " +
                                     std::to_string(SchemaElements(*t)) + " values, the job " +
                                     std::to_string(DenseElementCount(tensor->config())));
    }
    const uint32_t k = tensor->state_floats_per_value();
    if (t->state_floats_per_value() != k && t->state_floats_per_value() != 0) {
      return FailedPreconditionError(
          v + ": dense tensor '" + name + "' has " + std::to_string(t->state_floats_per_value()) +
          " optimizer state floats per value, the job's optimizer " + std::to_string(k));
    }
  }
  return OkStatus();
}

Status ParameterStore::LoadSparseFiles(const VersionReader& reader, bool first,
                                       const LoadOptions& options, LoadedVersion* out) {
  const uint32_t me = options_.server_id, servers = options_.num_servers;
  // With the same server count a server's keys are all in its own sparse files;
  // otherwise every sparse file is read and the server keeps the keys it owns.
  std::set<uint32_t> shards;
  for (const FileEntry& f : reader.manifest().files()) {
    const TableSchema* t = reader.FindTable(f.table());
    if (t != nullptr && !t->dense()) shards.insert(f.shard());
  }
  const bool own_files_only =
      !shards.empty() && shards.size() == servers && *shards.rbegin() + 1 == servers;
  struct File {
    MappedSparseFile mapped;
    EmbeddingTable* table;
    std::vector<uint32_t> crcs;
  };
  std::vector<File> files;
  std::map<EmbeddingTable*, uint64_t> incoming;
  for (const FileEntry& f : reader.manifest().files()) {
    auto it = sparse_.find(f.table());
    if (it == sparse_.end() || (own_files_only && f.shard() != me)) continue;
    ASSIGN_OR_RETURN(MappedSparseFile mapped, MappedSparseFile::Open(reader, f));
    out->files += 1;
    out->bytes += mapped.bytes();
    out->rows_read += mapped.rows();
    incoming[it->second.get()] += mapped.rows();
    files.push_back(File{std::move(mapped), it->second.get(), {}});
  }
  if (first) {
    // The index of every shard at its final size: no regrowth while importing.
    for (const auto& [table, rows] : incoming)
      table->Reserve(own_files_only ? rows : rows / servers);
  }
  auto owned = [me, servers](uint64_t key) {
    return servers <= 1 || ServerOfKey(key, servers) == me;
  };
  // Within a file tombstones come before rows; a key is in at most one file.
  for (File& f : files) {
    std::vector<uint64_t> gone;
    for (uint64_t key : f.mapped.tombstones()) {
      if (owned(key)) gone.push_back(key);
    }
    out->tombstones += f.table->Remove(gone);
  }

  // Tasks: the CRC32C pieces of every file and its rows in batches, handed
  // out dynamically to the pool's threads.
  struct Task {
    uint32_t file;
    bool crc;
    uint64_t begin, end;  // crc: piece index in begin; else rows [begin, end)
  };
  std::vector<Task> tasks;
  const uint64_t batch = std::max<uint64_t>(1, options.rows_per_task);
  for (uint32_t i = 0; i < files.size(); ++i) {
    File& f = files[i];
    if (options.verify_checksums) {
      f.crcs.resize(f.mapped.num_crc_pieces());
      for (uint64_t p = 0; p < f.crcs.size(); ++p) tasks.push_back(Task{i, true, p, p + 1});
    }
    for (uint64_t b = 0; b < f.mapped.rows(); b += batch) {
      tasks.push_back(Task{i, false, b, std::min(f.mapped.rows(), b + batch)});
    }
  }
  std::vector<Status> errors(tasks.size());
  pool_.ParallelFor(tasks.size(), [&](size_t t) {
    const Task& task = tasks[t];
    File& f = files[task.file];
    if (task.crc) {
      f.crcs[task.begin] = f.mapped.CrcOfPiece(task.begin);
      return;
    }
    thread_local TaskScratch scratch;
    StatusOr<std::span<const float>> values =
        f.mapped.Values(task.begin, task.end, &scratch.decoded);
    if (!values.ok()) {
      errors[t] = values.status();
      return;
    }
    std::span<const uint64_t> keys = f.mapped.keys().subspan(task.begin, task.end - task.begin);
    std::span<const float> state = f.mapped.state(task.begin, task.end);
    const size_t dim = f.mapped.dim(), sf = f.mapped.state_floats();
    if (!std::all_of(keys.begin(), keys.end(), owned)) {
      scratch.keys.clear();
      scratch.values.clear();
      scratch.state.clear();
      for (size_t i = 0; i < keys.size(); ++i) {
        if (!owned(keys[i])) continue;
        scratch.keys.push_back(keys[i]);
        scratch.values.insert(scratch.values.end(), values->begin() + i * dim,
                              values->begin() + (i + 1) * dim);
        if (sf > 0) {
          scratch.state.insert(scratch.state.end(), state.begin() + i * sf,
                               state.begin() + (i + 1) * sf);
        }
      }
      keys = scratch.keys;
      *values = std::span<const float>(scratch.values);
      state = scratch.state;
    }
    errors[t] = f.table->Import(keys, *values, state).WithContext(f.mapped.path());
  });
  for (const Status& s : errors) RETURN_IF_ERROR(s);
  if (options.verify_checksums) {
    for (const File& f : files) RETURN_IF_ERROR(f.mapped.CheckCrc(f.crcs));
  }
  return OkStatus();
}

StatusOr<LoadedVersion> ParameterStore::LoadVersion(const std::string& root, uint64_t version,
                                                    const LoadOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  LoadedVersion out;
  out.version = version;
  ASSIGN_OR_RETURN(out.chain, model_store::ResolveChain(root, version));
  std::vector<VersionReader> readers;
  for (uint64_t v : out.chain) {
    ASSIGN_OR_RETURN(VersionReader r,
                     VersionReader::Open(root + "/" + model_store::VersionDirName(v)));
    RETURN_IF_ERROR(CheckVersionFits(r));
    readers.push_back(std::move(r));
  }

  // Everything that can be checked before reading the data is fine: replace
  // the store's content.
  for (const auto& [name, table] : sparse_) table->Clear();
  std::map<std::string, DenseSliceBuffer, std::less<>> dense;
  for (const auto& [name, tensor] : dense_) {
    DenseSliceBuffer& b = dense[name];
    b.values.assign(tensor->size(), 0.0f);
    const uint32_t k = tensor->state_floats_per_value();
    b.with_state = k > 0 && readers.back().FindTable(name)->state_floats_per_value() == k;
    if (b.with_state) b.state.assign(tensor->size() * k, 0.0f);
  }
  const model_store::ReadOptions read{.verify_checksum = options.verify_checksums};
  for (size_t i = 0; i < readers.size(); ++i) {
    const VersionReader& reader = readers[i];
    const std::string v = "version " + std::to_string(reader.version());
    RETURN_IF_ERROR(LoadSparseFiles(reader, i == 0, options, &out).WithContext(v));
    // Dense slices (small): every file is read and checked, the part
    // overlapping this server's slice kept (a delta's replace elements).
    for (const FileEntry& f : reader.manifest().files()) {
      auto it = dense_.find(f.table());
      if (it == dense_.end()) continue;
      StatusOr<model_store::DenseSlice> slice = reader.ReadDense(f, read);
      if (!slice.ok()) return slice.status().WithContext(v);
      out.files += 1;
      out.bytes += f.bytes();
      const DenseTensor& tensor = *it->second;
      const uint64_t begin = std::max<uint64_t>(f.offset(), tensor.begin());
      const uint64_t end =
          std::min<uint64_t>(f.offset() + f.rows(), tensor.begin() + tensor.size());
      if (begin >= end) continue;
      DenseSliceBuffer& b = dense.at(f.table());
      std::copy(slice->values.begin() + (begin - f.offset()),
                slice->values.begin() + (end - f.offset()),
                b.values.begin() + (begin - tensor.begin()));
      const uint32_t k = tensor.state_floats_per_value();
      if (b.with_state && slice->state_floats == k) {
        std::copy(slice->state.begin() + (begin - f.offset()) * k,
                  slice->state.begin() + (end - f.offset()) * k,
                  b.state.begin() + (begin - tensor.begin()) * k);
      }
    }
  }
  for (const auto& [name, tensor] : dense_) {
    const DenseSliceBuffer& b = dense.at(name);
    RETURN_IF_ERROR(tensor->ImportPerValue(b.values, b.state)
                        .WithContext("version " + std::to_string(version)));
  }
  // Tables advance their epochs together, so one number names them all.
  for (const auto& [name, table] : sparse_) {
    out.epoch = table->AdvanceEpoch();
    out.rows += table->size();
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return out;
}

Status ParameterStore::ResetToInitial() {
  for (const auto& [name, table] : sparse_) table->Clear();
  for (const auto& [name, tensor] : dense_) {
    // The initial values come from a tensor created afresh (Initializer of the
    // global element indices).
    ASSIGN_OR_RETURN(std::unique_ptr<DenseTensor> fresh,
                     DenseTensor::Create(tensor->config(), tensor->begin(),
                                         tensor->begin() + tensor->size()));
    std::vector<float> values(tensor->size());
    fresh->Pull(values.data(), nullptr);
    RETURN_IF_ERROR(tensor->ImportPerValue(values, {}));
  }
  return OkStatus();
}

}  // namespace eddy::server
