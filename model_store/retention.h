// Deleting versions under a model root: retention (keep the newest full
// versions and what they and the pins need), pins, and deleting one version.
// Thread-safety: thread-safe and process-safe: each call holds an flock(2) of
// the root while it decides and renames.
#ifndef EDDY_MODEL_STORE_RETENTION_H_
#define EDDY_MODEL_STORE_RETENTION_H_

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace eddy::model_store {

struct RetentionOptions {
  int keep_full = 2;  // newest full versions to keep (>= 1)
  // Temporary directories of a version <= the newest committed one are always
  // stale; others only once untouched for this long (a writer may own them).
  std::chrono::seconds stale_temp_age{3600};
};

// Keeps the newest `keep_full` full versions, every delta whose parent chain
// leads to one of them, and every pinned version with its chain; deletes other
// committed versions (each first renamed out of sight, newest first, so no
// remaining delta loses its parent) and stale temporary directories. Versions
// whose manifest cannot be read are kept if newer than the oldest kept full
// version. With no full version nothing committed is deleted.
Status ApplyRetention(const std::string& root, const RetentionOptions& options);
Status ApplyRetention(const std::string& root, int keep_full);

// Pins (docs/model_format.md, "Pins and deleting one version"): a pinned
// version is never deleted, neither by ApplyRetention nor by DeleteVersion, and
// neither is any version in its chain. A pin is an empty file
// `<root>/pins/v<version>`; pin, unpin, delete and retention serialize on an
// flock(2) of the root directory, so a pin taken by one process is seen by
// another process's retention.

// Pins committed version `version` (durably: the pin file and its directory
// are fsynced). Pinning a pinned version is a no-op. Errors: NotFound for a
// version that is not committed (naming the versions there), I/O errors.
Status PinVersion(const std::string& root, uint64_t version);

// Removes the pin of `version`. NotFound (naming the pinned versions) if it is
// not pinned; I/O errors.
Status UnpinVersion(const std::string& root, uint64_t version);

// Pinned versions, ascending. A pin may outlive its version only if the
// version directory was removed by hand. NotFound if `root` is absent.
StatusOr<std::vector<uint64_t>> ListPins(const std::string& root);

// Deletes committed version `version`: renames it out of sight
// (`.v<version>.del-<random>`), fsyncs the root, then removes it. Errors:
// NotFound (not committed, naming the versions there); FailedPrecondition when
// it is pinned, when the chain of another committed version needs it (naming
// those versions), or when a newer version's manifest cannot be read (it might
// need it); I/O errors (a version renamed but not fully removed is finished by
// the next ApplyRetention).
Status DeleteVersion(const std::string& root, uint64_t version);

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_RETENTION_H_
