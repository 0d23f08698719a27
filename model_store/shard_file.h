// Writing one data file of a version outside a VersionWriter: a server writes
// its own shards into the writer's temporary directory, the coordinator records
// them with VersionWriter::AddWrittenFile and commits.
// Thread-safety: thread-safe for different (table, shard) files.
#ifndef EDDY_MODEL_STORE_SHARD_FILE_H_
#define EDDY_MODEL_STORE_SHARD_FILE_H_

#include <string>

#include "common/status.h"
#include "model_store/format.h"

namespace eddy::model_store {

// One data file written into a version's temporary directory, possibly by
// another process (a server writes its own shards; the coordinator commits).
struct WrittenShardFile {
  FileEntry entry;  // path, table, shard, rows, tombstones, bytes, crc32c, offset
  bool dense = false;
  uint32_t dim = 0;           // sparse: floats per key
  uint32_t state_floats = 0;  // optimizer state floats per value in the file
  Encoding encoding = proto::Manifest::ENCODING_FLOAT32;
};

struct ShardFileOptions {
  Encoding encoding = proto::Manifest::ENCODING_FLOAT32;  // sparse values
  bool serving = false;                                   // drop optimizer state
  bool delta = false;                                     // tombstones allowed
  WriterOptions writer;
};

// Writes one data file into `dir` (a VersionWriter's temp_dir(), usually in
// another process) exactly as VersionWriter::AddSparse/AddDense would; the
// writer then records it with AddWrittenFile. Errors: InvalidArgument (sizes,
// values the encoding cannot hold), I/O errors naming the path (a partly
// written file is left for the writer's Abort to remove).
StatusOr<WrittenShardFile> WriteShardFile(const std::string& dir, const SparseShard& shard,
                                          const ShardFileOptions& options);
StatusOr<WrittenShardFile> WriteShardFile(const std::string& dir, const DenseSlice& slice,
                                          const ShardFileOptions& options);

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_SHARD_FILE_H_
