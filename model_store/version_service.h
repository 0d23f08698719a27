// VersionService: serves the committed model versions of a root directory over
// a ZeroMQ ROUTER socket (VERSION_LIST / VERSION_FETCH / VERSION_WATCH, see
// docs/protocol.md "Serving"), so serving replicas need no shared filesystem.
// Thread-safety: Bind and Run are called by one thread (Run owns the socket);
// Stop, Notify and stats() may be called from any thread.
#ifndef EDDY_MODEL_STORE_VERSION_SERVICE_H_
#define EDDY_MODEL_STORE_VERSION_SERVICE_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/message.h"
#include "common/net.h"
#include "common/proto/model.pb.h"
#include "common/status.h"

namespace eddy::model_store {

struct VersionServiceOptions {
  std::string root;  // the directory holding v<12 digits>/ version directories
  std::string bind_host = "127.0.0.1";
  int port = 0;                              // 0: an ephemeral port
  uint64_t chunk_bytes = uint64_t{1} << 20;  // largest VERSION_FETCH chunk
  // The root is rescanned this often (and at once on Notify()).
  std::chrono::milliseconds scan_interval{50};
};

struct VersionServiceStats {
  uint64_t requests = 0;    // well-formed requests answered
  uint64_t bytes_sent = 0;  // chunk bytes sent by VERSION_FETCH
  uint64_t errors = 0;      // requests refused or dropped (garbage, bad path, unknown version)
};

// Owns its socket; borrows the ZeroMQ context, which must outlive it.
class VersionService {
 public:
  VersionService(zmq::context_t& context, VersionServiceOptions options);
  ~VersionService();
  VersionService(const VersionService&) = delete;
  VersionService& operator=(const VersionService&) = delete;

  // Binds the ROUTER socket; returns the endpoint (tcp://127.0.0.1:port).
  // Errors: Unavailable (cannot bind), InvalidArgument (bad options).
  StatusOr<std::string> Bind();
  // Serves requests on the calling thread until Stop(). Requires Bind().
  // Returns OK after Stop(), Unavailable if the socket fails.
  Status Run();
  // Makes Run() return soon. Idempotent; may precede Run().
  void Stop();
  // A version was just committed under the root: rescan now.
  void Notify();

  VersionServiceStats stats() const;

 private:
  struct Watcher {
    std::string routing_id;
    uint64_t request_id = 0;
    uint64_t after_version = 0;
    SteadyClock::time_point deadline;
  };

  void Rescan();
  void Dispatch(const std::string& routing_id, const Message& request);
  void HandleList(const std::string& routing_id, const Message& request);
  void HandleFetch(const std::string& routing_id, const Message& request);
  void HandleWatch(const std::string& routing_id, const Message& request);
  void AnswerWatchers();
  void ReplyVersions(const std::string& routing_id, uint64_t request_id, uint64_t after_version);
  void ReplyError(const std::string& routing_id, uint64_t request_id, const Status& status);
  void Send(const std::string& routing_id, const Message& reply);

  zmq::context_t& context_;
  const VersionServiceOptions options_;
  std::unique_ptr<zmq::socket_t> socket_;  // owned by the Run() thread after Bind()
  Waker waker_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> notified_{false};
  std::atomic<uint64_t> requests_{0};
  std::atomic<uint64_t> bytes_sent_{0};
  std::atomic<uint64_t> errors_{0};

  // Owned by the Run() thread.
  struct Committed {
    std::string manifest_bytes;
    proto::Manifest manifest;
  };
  std::map<uint64_t, Committed> versions_;  // committed versions under the root
  std::map<uint64_t, bool> unreadable_;     // versions whose manifest did not open (logged once)
  std::vector<Watcher> watchers_;
  SteadyClock::time_point next_scan_{};
};

}  // namespace eddy::model_store

#endif  // EDDY_MODEL_STORE_VERSION_SERVICE_H_
