// VersionSource: where a serving replica's loader gets model versions — a
// local root directory read in place, or a VersionService whose versions are
// fetched in checked chunks into a cache directory.
// Thread-safety: thread-compatible; a source is used by the loader thread only.
#ifndef EDDY_SERVING_VERSION_SOURCE_H_
#define EDDY_SERVING_VERSION_SOURCE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/net.h"
#include "common/proto/model.pb.h"
#include "common/status.h"
#include "serving/replica.h"

namespace eddy::serving {

// A version as announced by the source.
struct VersionEntry {
  proto::Manifest manifest;
  std::string manifest_bytes;
};

class VersionSource {
 public:
  virtual ~VersionSource() = default;
  // Committed versions newer than `after`, ascending.
  virtual StatusOr<std::vector<VersionEntry>> List(uint64_t after) = 0;
  // As List, but waits up to `timeout` for one; empty when none came or the
  // loader was woken (Stop, pin request).
  virtual StatusOr<std::vector<VersionEntry>> Watch(uint64_t after,
                                                    std::chrono::milliseconds timeout) = 0;
  // A local directory holding the whole version (fetched if needed), not yet verified.
  virtual StatusOr<std::string> Fetch(const VersionEntry& entry) = 0;
  // Forgets a local copy that failed verification.
  virtual void Discard(uint64_t version) { (void)version; }
  // Full version `full` is loaded: local copies of older versions may go.
  virtual void Prune(uint64_t full) { (void)full; }
};

// Versions read in place from `root`, rescanned every `scan_interval`;
// `waker` (the loader's) ends a Watch early. Borrows the waker.
std::unique_ptr<VersionSource> MakeLocalSource(std::string root,
                                               std::chrono::milliseconds scan_interval,
                                               Waker& waker);

// Versions fetched from options.version_endpoint into options.cache_dir.
// `waker` ends a Watch early; `stop` cancels any call. Borrows all four.
// Errors: InvalidArgument for a bad endpoint.
StatusOr<std::unique_ptr<VersionSource>> ConnectRemoteSource(zmq::context_t& context,
                                                             const ReplicaOptions& options,
                                                             Waker& waker,
                                                             const std::atomic<bool>& stop);

}  // namespace eddy::serving

#endif  // EDDY_SERVING_VERSION_SOURCE_H_
