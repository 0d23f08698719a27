// Replica: a serving replica. A background loader pulls model versions (the
// newest full version, then every delta after it) from a VersionService or a
// local root directory, checks them and applies them to its model; the
// caller's thread answers PREDICT and SERVE_CONTROL on a ROUTER socket (DEALER
// and REQ clients), never waiting for a load.
//
// The newest model is held twice, in compact tables (left-right): predictions
// read the front copy through a LoadedModel view; a delta is applied in place
// to the back copy (at the previous version), which is then published as the
// front; once no prediction reads the old front any more, the loader applies
// the same delta to it, and it is the back. A prediction thus always sees one
// whole version and never waits, and a delta costs O(rows it changes), twice.
// A full version is read into one copy; the other is a copy of it. Versions
// pinned or rolled back to are loaded from their files into separate,
// immutable models (at most max_versions_cached of them).
// Thread-safety: Bind and Run are called by one thread; Stop, status,
// serving, model_memory_bytes and WaitFor may be called from any thread.
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
#include "serving/serving_model.h"

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
  // Older versions kept in memory once loaded for PIN (immutable models besides
  // the newest version's two copies), >= 1. The pinned one is never evicted.
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
  // The model answering predictions (null before the first version). While a
  // caller holds the newest version's view, the loader cannot apply the next
  // delta to the copy it reads (it waits, logging): hold it briefly.
  std::shared_ptr<const LoadedModel> serving() const;
  // Bytes of the models in memory: the newest version's two copies and the
  // pinned / rolled back versions.
  uint64_t model_memory_bytes() const;
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
  Status LoadFull(const model_store::VersionReader& reader, SteadyClock::time_point start);
  Status ApplyDelta(const model_store::VersionReader& reader, SteadyClock::time_point start);
  void CatchUpBack(const model_store::VersionReader& reader);
  bool WaitNoViews(const ModelCopy& copy);
  Status LoadPinned(VersionSource& source, uint64_t version);
  // Makes `model` the newest version (served unless pinned); returns the
  // previous newest view, replaced in serving_ by an immutable copy if it was
  // pinned and `copy_if_pinned`.
  std::shared_ptr<const LoadedModel> Publish(std::shared_ptr<const LoadedModel> model,
                                             bool copy_if_pinned, double seconds) EXCLUDES(mu_);
  void UpdateMemory() EXCLUDES(mu_);
  void Refuse(uint64_t version, const Status& status) EXCLUDES(mu_);
  std::shared_ptr<const LoadedModel> FindLocked(uint64_t version) const REQUIRES(mu_);
  void EvictLocked() REQUIRES(mu_);
  proto::ServeStatus StatusLocked() const REQUIRES(mu_);
  bool stopping() const { return stop_.load(); }

  zmq::context_t& context_;
  const ReplicaOptions options_;
  std::unique_ptr<zmq::socket_t> socket_;  // prediction socket, owned by the Run() thread
  Waker io_waker_;                         // wakes Run(): Stop, finished pins
  Waker loader_waker_;                     // wakes the loader: Stop, pin requests
  std::atomic<bool> stop_{false};

  // Loader-thread state. front_ is read by the newest version's view; back_ is
  // changed only while no view of it lives, and is at the front's version
  // between deltas (null: rebuilt from the front when needed).
  std::shared_ptr<ModelCopy> front_, back_;
  bool broken_chain_ = false;  // waiting for the next full version

  // I/O-thread state.
  Predictor predictor_;

  mutable Mutex mu_;
  mutable CondVar changed_;  // any state change below (and Stop)
  std::shared_ptr<const LoadedModel> serving_ GUARDED_BY(mu_);
  std::shared_ptr<const LoadedModel> newest_ GUARDED_BY(mu_);  // view of front_
  // Immutable older versions loaded for PIN / ROLLBACK, by version.
  std::map<uint64_t, std::shared_ptr<const LoadedModel>> cache_ GUARDED_BY(mu_);
  uint64_t model_bytes_ GUARDED_BY(mu_) = 0;
  uint64_t newest_version_ GUARDED_BY(mu_) = 0;
  uint64_t pinned_ GUARDED_BY(mu_) = 0;
  std::deque<PendingPin> pins_ GUARDED_BY(mu_);  // I/O thread -> loader
  std::deque<Done> done_ GUARDED_BY(mu_);        // loader -> I/O thread
  proto::ServeStatus counters_ GUARDED_BY(mu_);  // counters and last_error only
};

}  // namespace eddy::serving

#endif  // EDDY_SERVING_REPLICA_H_
