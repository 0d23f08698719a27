// The names of committed versions under a model root and listing them
// (docs/model_format.md, "Directory layout").
// Thread-safety: thread-safe.
#ifndef EDDY_MODEL_STORE_VERSION_DIR_H_
#define EDDY_MODEL_STORE_VERSION_DIR_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace eddy::model_store {

// "v000000000042": the directory name of a committed version.
std::string VersionDirName(uint64_t version);

// Committed versions under `root`, ascending. Temporary directories and names
// that are not canonical version names are ignored. NotFound if `root` is absent.
StatusOr<std::vector<uint64_t>> ListVersions(const std::string& root);

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_VERSION_DIR_H_
