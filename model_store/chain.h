// ResolveChain: the full version and the deltas to load, in order, to
// materialize one version of a model root.
// Thread-safety: thread-safe (reads manifests only).
#ifndef EDDY_MODEL_STORE_CHAIN_H_
#define EDDY_MODEL_STORE_CHAIN_H_

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace eddy::model_store {

// The versions to load, in order, to materialize `version`: a full version,
// then the deltas leading to `version`. Errors: NotFound for a version that is
// not committed (naming its neighbours), a missing delta inside the chain, or
// a missing full version at its root; DataLoss for inconsistent manifests.
StatusOr<std::vector<uint64_t>> ResolveChain(const std::string& root, uint64_t version);

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_CHAIN_H_
