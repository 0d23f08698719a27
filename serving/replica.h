// Replica: a serving replica. A background loader pulls model versions (the
// newest full version, then every delta after it) from a VersionService or a
// local root directory, checks them, builds each new version on a copy of the
// previous one and swaps it in whole; the caller's thread answers PREDICT and
// SERVE_CONTROL on a ROUTER socket (DEALER and REQ clients), never waiting for
// a load. Thread-safety: Bind and Run are called by one thread; Stop, status,
// serving and WaitFor may be called from any thread.
#ifndef EDDY_SERVING_REPLICA_H_
#define EDDY_SERVING_REPLICA_H_

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/buffer.h"
#include "common/message.h"
#include "common/mutex.h"
#include "common/net.h"
#include "common/proto/eddy.pb.h"
#include "common/proto/serving.pb.h"
#include "common/status.h"
#include "serving/loaded_model.h"

namespace eddy {
class Transport;
}  // namespace eddy

namespace eddy::serving {

class ServingMetrics;
class VersionSource;
struct VersionEntry;

struct ReplicaOptions {
  // Exactly one of the two: a VersionService endpoint (tcp://host:port), or a
  // local root directory of versions (read in place, no network).
  std::string version_endpoint;
  std::string model_dir;
  // Remote mode: fetched versions are written here (required; the caller owns
  // and cleans it). Copies older than the newest loaded full version are
  // deleted. Unused in local mode.
  std::string cache_dir;
  std::string bind_host = "127.0.0.1";
  int port = 0;  // prediction socket; 0: ephemeral
  // Materialized versions kept in memory (for pin/rollback), >= 1. The served,
  // newest and pinned versions are never evicted.
  int max_versions_cached = 3;
  std::chrono::milliseconds watch_timeout{1000};   // VERSION_WATCH long poll
  std::chrono::milliseconds scan_interval{50};     // local mode: rescan period
  std::chrono::milliseconds rpc_timeout{10000};    // one LIST/FETCH round trip
  uint64_t fetch_chunk_bytes = uint64_t{1} << 20;  // <= the service's chunk size
  // Opens the connection to the version service; nullptr: direct. Not owned;
  // must outlive the replica.
  Transport* transport = nullptr;
  // Records predict latency and counts (transport zmq); nullptr: none. Not
  // owned; must outlive the replica.
  ServingMetrics* metrics = nullptr;
};

// Borrows the ZeroMQ context, which must outlive it.
class Replica {
 public:
  Replica(zmq::context_t& context, ReplicaOptions options);
  ~Replica();
  Replica(const Replica&) = delete;
  Replica& operator=(const Replica&) = delete;

  // Binds the prediction socket; returns its endpoint. Errors: InvalidArgument
  // (options), Unavailable (bind).
  StatusOr<std::string> Bind();
  // Starts the loader thread and serves requests on the calling thread until
  // Stop(). Requires Bind(). Returns OK after Stop(); Unavailable on a socket
  // failure.
  Status Run();
  // Makes Run() return soon. Idempotent; may precede Run().
  void Stop();

  // A snapshot of the replica's state and counters.
  proto::ServeStatus status() const;
  // The model answering predictions (null before the first version).
  std::shared_ptr<const LoadedModel> serving() const;
  // Waits until `pred(status())` holds (re-checked on every state change) or
  // `timeout` passes; returns whether it held.
  bool WaitFor(const std::function<bool(const proto::ServeStatus&)>& pred,
               std::chrono::milliseconds timeout) const;

 private:
  struct Request;
  struct PendingPin {
    Envelope envelope;
    uint64_t request_id = 0;
    uint64_t version = 0;
  };
  struct Done {
    Envelope envelope;
    uint64_t request_id = 0;
    Status status;
  };

  // I/O thread (replica.cc).
  void SendFinishedPins();
  void ServeOne(Request& request);
  void Dispatch(Request& request);
  void HandlePredict(Request& request);
  void HandleControl(Request& request);
  void SendReply(const Envelope& envelope, const proto::Header& header, Buffer values);
  void SendStatusReply(const Envelope& envelope, uint64_t request_id, const Status& status);
  void SendError(const Envelope& envelope, uint64_t request_id, const Status& status);

  // Loader thread (replica_loader.cc; versions come from a VersionSource).
  void LoaderMain();
  Status Follow(VersionSource& source, const VersionEntry& entry);
  Status LoadPinned(VersionSource& source, uint64_t version);
  void Publish(std::shared_ptr<const LoadedModel> model, bool newest, double seconds) EXCLUDES(mu_);
  void Refuse(uint64_t version, const Status& status) EXCLUDES(mu_);
  void EvictLocked() REQUIRES(mu_);
  proto::ServeStatus StatusLocked() const REQUIRES(mu_);
  bool stopping() const { return stop_.load(); }

  zmq::context_t& context_;
  const ReplicaOptions options_;
  std::unique_ptr<zmq::socket_t> socket_;  // prediction socket, owned by the Run() thread
  Waker io_waker_;                         // wakes Run(): Stop, finished pins
  Waker loader_waker_;                     // wakes the loader: Stop, pin requests
  std::atomic<bool> stop_{false};

  // Loader-thread state.
  std::shared_ptr<const LoadedModel> newest_;  // head of the followed chain
  bool broken_chain_ = false;                  // waiting for the next full version

  // I/O-thread state.
  Predictor predictor_;

  mutable Mutex mu_;
  mutable CondVar changed_;  // any state change below (and Stop)
  std::shared_ptr<const LoadedModel> serving_ GUARDED_BY(mu_);
  std::map<uint64_t, std::shared_ptr<const LoadedModel>> cache_ GUARDED_BY(mu_);
  uint64_t newest_version_ GUARDED_BY(mu_) = 0;
  uint64_t pinned_ GUARDED_BY(mu_) = 0;
  std::deque<PendingPin> pins_ GUARDED_BY(mu_);  // I/O thread -> loader
  std::deque<Done> done_ GUARDED_BY(mu_);        // loader -> I/O thread
  proto::ServeStatus counters_ GUARDED_BY(mu_);  // counters and last_error only
};

}  // namespace eddy::serving

#endif  // EDDY_SERVING_REPLICA_H_
