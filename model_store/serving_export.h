// ExportForServing: copies a training version to a serving root as a serving
// version (no optimizer state, sparse values re-encoded), full or delta.
// Thread-safety: thread-compatible; uses up to ExportOptions::threads threads.
#ifndef EDDY_MODEL_STORE_SERVING_EXPORT_H_
#define EDDY_MODEL_STORE_SERVING_EXPORT_H_

#include <cstdint>
#include <string>

#include "common/status.h"
#include "model_store/format.h"

namespace eddy::model_store {

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

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_SERVING_EXPORT_H_
