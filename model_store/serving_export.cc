#include "model_store/serving_export.h"

#include <algorithm>
#include <atomic>
#include <functional>
#include <map>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "common/mutex.h"
#include "model_store/chain.h"
#include "model_store/internal/file_io.h"
#include "model_store/materialize.h"
#include "model_store/version_dir.h"
#include "model_store/version_reader.h"
#include "model_store/version_writer.h"

namespace eddy::model_store {
namespace {

using internal::JoinPath;
using proto::Manifest;

// What a serving copy of `m` commits: the same tables without optimizer state
// (sparse encodings left to the writer), positions, metrics, attributes, time.
VersionInfo ServingInfo(const Manifest& m) {
  VersionInfo info;
  for (const TableSchema& t : m.tables()) {
    TableSchema out = t;
    out.set_state_floats_per_value(0);
    if (!t.dense()) out.clear_value_encoding();
    info.tables.push_back(std::move(out));
  }
  info.positions.assign(m.positions().begin(), m.positions().end());
  for (const auto& [k, v] : m.metrics()) info.metrics[k] = v;
  for (const auto& [k, v] : m.attributes()) info.attributes[k] = v;
  info.created_unix_ms = m.created_unix_ms();
  return info;
}

// Runs fn(0..n-1) on up to `threads` threads; returns the first error.
Status ForEachParallel(size_t n, int threads, const std::function<Status(size_t)>& fn) {
  std::atomic<size_t> next{0};
  Mutex mu;
  Status first;
  auto work = [&] {
    for (size_t i = next++; i < n; i = next++) {
      Status s = fn(i);
      if (!s.ok()) {
        MutexLock l(&mu);
        if (first.ok()) first = std::move(s);
        next = n;  // stop handing out work
      }
    }
  };
  const size_t count = std::clamp<size_t>(static_cast<size_t>(std::max(threads, 1)), 1, n);
  {
    std::vector<std::jthread> pool;
    for (size_t t = 1; t < count; ++t) pool.emplace_back(work);
    work();
  }  // joins
  MutexLock l(&mu);
  return first;
}

// What one unit of export work yields for the serving version.
struct ServingParts {
  std::vector<SparseShard> sparse;
  std::vector<DenseSlice> dense;
};

// Runs produce(0..n-1) on up to `threads` threads and adds every shard and
// slice it yields to `writer`, without optimizer state. The first error wins.
Status WriteParts(size_t n, int threads, VersionWriter* writer,
                  const std::function<StatusOr<ServingParts>(size_t)>& produce) {
  return ForEachParallel(n, threads, [&](size_t i) -> Status {
    ASSIGN_OR_RETURN(ServingParts parts, produce(i));
    for (DenseSlice& d : parts.dense) {
      d.state.clear();
      d.state_floats = 0;
      RETURN_IF_ERROR(writer->AddDense(d));
    }
    for (SparseShard& s : parts.sparse) {
      s.state.clear();
      s.state_floats = 0;
      RETURN_IF_ERROR(writer->AddSparse(s));
      s = SparseShard();  // release its rows once written
    }
    return OkStatus();
  });
}

// The dense tensors of `version`, materialized whole (they are small) and cut
// as the chain's full version `base` did (or into one slice for a table it did
// not have).
StatusOr<ServingParts> DenseParts(const std::string& src_root, uint64_t version,
                                  const ExportOptions& options, const Manifest& base,
                                  const std::map<std::string, const TableSchema*>& dense_tables) {
  ServingParts parts;
  MaterializeOptions mo;
  mo.verify_checksums = options.verify_checksums;
  mo.include = [&](const FileEntry& f) { return dense_tables.count(f.table()) > 0; };
  ASSIGN_OR_RETURN(MaterializedModel model, Materialize(src_root, version, mo));
  for (const auto& [name, schema] : dense_tables) {
    const std::vector<float>& values = model.dense.at(name).values;
    std::vector<DenseSlice> slices;
    for (const FileEntry& f : base.files()) {
      if (f.table() != name) continue;
      DenseSlice d;
      d.table = name;
      d.shard = f.shard();
      d.offset = f.offset();
      d.values.assign(values.begin() + f.offset(), values.begin() + f.offset() + f.rows());
      slices.push_back(std::move(d));
    }
    uint64_t covered = 0;
    for (const DenseSlice& d : slices) covered += d.values.size();
    if (covered != values.size()) {  // the table is newer than the full version
      slices.clear();
      DenseSlice whole;
      whole.table = name;
      whole.values = values;
      slices.push_back(std::move(whole));
    }
    for (DenseSlice& d : slices) parts.dense.push_back(std::move(d));
  }
  return parts;
}

// The rows of sparse shard `shard` of `version`: the files of shard s give
// shard s's rows.
StatusOr<ServingParts> SparseShardParts(
    const std::string& src_root, uint64_t version, const ExportOptions& options, uint32_t shard,
    const std::map<std::string, const TableSchema*>& sparse_tables) {
  ServingParts parts;
  MaterializeOptions mo;
  mo.verify_checksums = options.verify_checksums;
  mo.include = [&](const FileEntry& f) {
    return f.shard() == shard && sparse_tables.count(f.table()) > 0;
  };
  ASSIGN_OR_RETURN(MaterializedModel model, Materialize(src_root, version, mo));
  for (auto& [name, rows] : model.sparse) {
    if (rows.size() == 0) continue;
    SparseShard out;
    out.table = name;
    out.shard = shard;
    out.dim = rows.dim();
    out.keys = rows.keys();
    out.values.reserve(rows.size() * rows.dim());
    for (uint64_t key : out.keys) {
      const std::span<const float> v = rows.Find(key);
      out.values.insert(out.values.end(), v.begin(), v.end());
    }
    rows = SparseRows();  // release the table's rows once copied
    parts.sparse.push_back(std::move(out));
  }
  return parts;
}

// A full serving version materialized from `chain` (full version first): the
// dense tensors are one unit of work, each sparse shard another.
Status ExportFull(const std::string& src_root, uint64_t version, VersionWriter* writer,
                  const ExportOptions& options, const std::vector<Manifest>& chain) {
  const Manifest& target = chain.back();
  const Manifest& base = chain.front();
  std::map<std::string, const TableSchema*> sparse_tables, dense_tables;
  for (const TableSchema& t : target.tables()) {
    (t.dense() ? dense_tables : sparse_tables)[t.name()] = &t;
  }
  std::set<uint32_t> shard_set;
  for (const Manifest& m : chain) {
    for (const FileEntry& f : m.files()) {
      if (sparse_tables.count(f.table()) > 0) shard_set.insert(f.shard());
    }
  }
  const std::vector<uint32_t> shards(shard_set.begin(), shard_set.end());
  const size_t dense_units = dense_tables.empty() ? 0 : 1;
  return WriteParts(dense_units + shards.size(), options.threads, writer,
                    [&](size_t i) -> StatusOr<ServingParts> {
                      if (i < dense_units) {
                        return DenseParts(src_root, version, options, base, dense_tables);
                      }
                      return SparseShardParts(src_root, version, options, shards[i - dense_units],
                                              sparse_tables);
                    });
}

// A serving delta from the training delta `target`'s own files, one unit of
// work per file.
Status ExportDelta(const std::string& src_root, VersionWriter* writer, const ExportOptions& options,
                   const Manifest& target) {
  ASSIGN_OR_RETURN(VersionReader reader,
                   VersionReader::Open(JoinPath(src_root, VersionDirName(target.version()))));
  const ReadOptions read{.verify_checksum = options.verify_checksums};
  const auto& files = target.files();
  return WriteParts(files.size(), options.threads, writer, [&](size_t i) -> StatusOr<ServingParts> {
    const FileEntry& f = files[static_cast<int>(i)];
    const TableSchema* t = reader.FindTable(f.table());
    ServingParts parts;
    if (t != nullptr && t->dense()) {
      ASSIGN_OR_RETURN(DenseSlice d, reader.ReadDense(f, read));
      parts.dense.push_back(std::move(d));
    } else {
      ASSIGN_OR_RETURN(SparseShard s, reader.ReadSparse(f, read));
      parts.sparse.push_back(std::move(s));
    }
    return parts;
  });
}

}  // namespace

Status ExportForServing(const std::string& src_root, uint64_t version, const std::string& dst_root,
                        Encoding encoding, const ExportOptions& options) {
  const std::string what =
      "exporting version " + std::to_string(version) + " of " + src_root + " to " + dst_root;
  ASSIGN_OR_RETURN(const std::vector<uint64_t> chain_versions, ResolveChain(src_root, version));
  std::vector<Manifest> chain;
  for (uint64_t v : chain_versions) {
    ASSIGN_OR_RETURN(VersionReader r, VersionReader::Open(JoinPath(src_root, VersionDirName(v))));
    chain.push_back(r.manifest());
  }
  const Manifest& target = chain.back();
  uint64_t parent = 0;
  if (options.delta) {
    if (target.kind() != Manifest::KIND_DELTA) {
      return InvalidArgumentError(what + ": version " + std::to_string(version) +
                                  " is a full version; export it as a full version");
    }
    parent = target.parent_version();
    auto p = VersionReader::Open(JoinPath(dst_root, VersionDirName(parent)));
    if (!p.ok()) {
      return FailedPreconditionError(what + " as a delta: its parent " + std::to_string(parent) +
                                     " is not exported there yet (" + p.status().message() +
                                     "); export the parent first");
    }
    if (!p->manifest().serving()) {
      return FailedPreconditionError(what + ": version " + std::to_string(parent) + " under " +
                                     dst_root + " is not a serving version");
    }
  }
  ASSIGN_OR_RETURN(VersionWriter writer,
                   VersionWriter::Begin(dst_root, version, parent,
                                        /*serving=*/true, encoding, options.writer));
  Status s = options.delta ? ExportDelta(src_root, &writer, options, target)
                           : ExportFull(src_root, version, &writer, options, chain);
  if (s.ok()) s = writer.Commit(ServingInfo(target));
  if (!s.ok()) {
    writer.Abort();
    return s.WithContext(what);
  }
  return OkStatus();
}

}  // namespace eddy::model_store
