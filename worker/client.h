// Client: a worker's asynchronous connection to the servers (data plane) and the
// scheduler (control plane). Push/Pull split a request by key over the servers,
// send the parts without waiting, and reassemble pulled values in the order of
// the caller's keys. Many operations may be in flight at once.
// Thread-safety: all public methods may be called from any thread. One internal
// I/O thread owns every socket; callbacks run on it and must be short.
#ifndef EDDY_WORKER_CLIENT_H_
#define EDDY_WORKER_CLIENT_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>
#include <zmq.hpp>

#include "common/buffer.h"
#include "common/message.h"
#include "common/mutex.h"
#include "common/net.h"
#include "common/status.h"

namespace eddy {
class SchedulerLink;
class Transport;
}  // namespace eddy

namespace eddy::worker {

struct ClientOptions {
  std::string scheduler;    // tcp://host:port
  int requested_rank = -1;  // worker id wanted (MPI launch), -1: any
  // An operation not answered within this time fails with DeadlineExceeded.
  std::chrono::milliseconds request_timeout{30'000};
  std::chrono::milliseconds registration_timeout{120'000};
  int64_t max_message_bytes = int64_t{1} << 30;
  // Opens the connections to the scheduler and the servers; nullptr: direct
  // connects. Not owned; must outlive the client.
  Transport* transport = nullptr;
  // The scheduler asks this worker's process to run lost worker `slot` too
  // (ADOPT, under --tolerate_worker_failures when no replacement came): called
  // on the I/O thread, must return quickly. Empty: adoption requests are
  // ignored (the recovery then waits for a replacement).
  std::function<void(int slot)> on_adopt;
};

// Called once when an operation completes, on the client's I/O thread (or on
// the calling thread when the call fails before anything is sent), before
// Wait() returns.
using Callback = std::function<void(const Status&)>;

// The handle of one asynchronous operation.
// Thread-safety: Wait() and the accessors may be called from any thread.
class Op {
 public:
  // Ops are made by the Client; `callback` (may be empty) runs at completion.
  explicit Op(Callback callback = {}) : callback_(std::move(callback)) {}

  // Blocks until the operation completes and returns its status. With a timeout,
  // returns DeadlineExceeded if it has not completed by then (it goes on).
  Status Wait(std::optional<std::chrono::milliseconds> timeout = std::nullopt);
  bool done() const;
  // Pulled values: for sparse pulls keys.size() * dim floats in the order of the
  // request's keys; for dense pulls the whole tensor. Empty before success.
  std::span<const float> values() const;
  // After success. Pulls: the smallest clock of the slowest live worker that the
  // answering servers saw when they read the values. Dense pushes and pulls: the
  // largest tensor version in the replies (pushes applied to the tensor,
  // counting this one for a push; 0 for a push only queued for its clock's sum).
  int64_t slowest_clock() const { return slowest_clock_; }
  int64_t version() const { return version_; }

 private:
  friend class Client;
  void Complete(const Status& status);  // first call wins

  mutable Mutex mu_;
  CondVar cv_;
  bool completing_ GUARDED_BY(mu_) = false;  // Complete() was called
  bool done_ GUARDED_BY(mu_) = false;        // and the callback has run
  Status status_ GUARDED_BY(mu_);
  Callback callback_ GUARDED_BY(mu_);
  // Filled by the I/O thread before completion.
  int remaining_parts_ = 0;
  Buffer result_;
  bool scatter_ = false;  // parts' values go to positions_ (sparse) or offsets_ (dense)
  uint32_t dim_ = 0;
  std::vector<std::vector<uint32_t>> positions_;  // per part: original key positions
  std::vector<uint64_t> offsets_;                 // per part: first dense element
  std::vector<uint64_t> expected_values_;         // per part: values expected in the reply
  int64_t slowest_clock_ = -1;
  int64_t version_ = -1;
};

using OpPtr = std::shared_ptr<Op>;

class Client {
 public:
  // Registers with the scheduler (blocks until the whole cluster has joined),
  // connects to every server and starts the I/O thread. `context` must outlive
  // the client.
  static StatusOr<std::unique_ptr<Client>> Connect(zmq::context_t& context, ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  int worker_id() const { return worker_id_; }
  int num_workers() const { return view_.workers_size(); }
  int num_servers() const { return view_.servers_size(); }
  const proto::ClusterView& view() const { return view_; }
  // The table definition, or nullptr if the job has no such table.
  const proto::TableConfig* table(std::string_view name) const;

  // Sparse tables. `keys` is a Buffer of uint64 ids and `grads` of keys*dim
  // floats; both are sent without copying when one server owns all keys (do not
  // modify them until the operation completes). Errors (unknown table, wrong
  // sizes, a server's error reply, a timeout, an aborted job) complete the Op
  // with a status; nothing throws. A failed push may have been applied on some
  // of the servers it was split over.
  OpPtr Pull(std::string_view table, Buffer keys, Callback callback = {});
  OpPtr Push(std::string_view table, Buffer keys, Buffer grads, Callback callback = {});
  // Push, then pull the updated values of the same keys in one round trip.
  OpPtr PushPull(std::string_view table, Buffer keys, Buffer grads, Callback callback = {});
  // Copying conveniences.
  OpPtr Pull(std::string_view table, std::span<const uint64_t> keys, Callback callback = {});
  OpPtr Push(std::string_view table, std::span<const uint64_t> keys, std::span<const float> grads,
             Callback callback = {});

  // Dense tensors: grads holds every element of the tensor.
  OpPtr PushDense(std::string_view name, Buffer grads, Callback callback = {});
  OpPtr PullDense(std::string_view name, Callback callback = {});

  // Announces to every server that this worker finished its current clock (one
  // mini-batch) and advances the clock its pulls carry. Under a staleness bound
  // s (SchedulerOptions::staleness), a pull made at clock c is answered once
  // every worker has finished clock c - s; without one, clocks cost nothing.
  OpPtr Clock(Callback callback = {});
  // Clock() that also records this worker's stream position (fresh rows
  // consumed through this clock): a model version cut at this clock stores it,
  // and resuming from that version starts there. `stream_state`: the position
  // in a partitioned stream (PartitionPositions::Serialize), else empty.
  OpPtr ClockAt(uint64_t stream_rows, std::string stream_state = {}, Callback callback = {});
  // Where this worker starts in its stream (resumed rows, and a partitioned
  // stream's start positions): the position a version records for it until its
  // first clock. Call before the first Clock. Any thread.
  void SetStartPosition(uint64_t stream_rows, std::string stream_state);
  // Clocks this worker has finished.
  int64_t clock() const { return clock_.load(); }

  // Blocks until every worker has reached the barrier `name`.
  Status Barrier(const std::string& name = "workers");
  // Tells the servers this worker will not clock again (a CLOCK of
  // kFinishedClock), then the scheduler that it is done (with its report), and
  // blocks until the scheduler ends the job. OK when the job ended normally.
  Status Finish(const std::string& report);

  // Tells the scheduler this worker failed (the job is aborted). Does not block.
  void Abort(const Status& why);

  // Hands the worker program's latest metrics (opaque bytes, a cumulative
  // snapshot) to the I/O thread, which sends them to the scheduler as METRICS.
  // Never blocks on the network and never fails: when several reports are
  // waiting only the latest is sent; after the job ended or was aborted, or
  // above kMaxMetricsBytes (logged), the payload is dropped. A report made
  // before Finish() on the same thread reaches the scheduler before the finish.
  void ReportMetrics(std::string payload);
  // The largest payload ReportMetrics sends.
  static constexpr size_t kMaxMetricsBytes = size_t{16} << 20;
  // The clock a finished worker announces: it no longer holds anyone back.
  static constexpr int64_t kFinishedClock = std::numeric_limits<int64_t>::max();

  // Model versions: the scheduler's SNAPSHOT(v) makes the I/O thread send a CUT
  // marker to every server at this worker's next clock boundary (at once when
  // nothing was pushed since the last Clock()). Nothing to do for the caller
  // beyond clocking every batch.

  // OK while the job runs; the reason once it was aborted or lost.
  Status health() const;

  // Recovery (scheduler/recovery.h). After the scheduler's RECOVER every
  // operation in flight and every new one fails with Aborted, until the worker
  // program calls WaitForRestart(): it blocks until the servers have rolled
  // back, then returns the new cluster view (its resume positions say where
  // this worker's stream goes on; view() returns it from then on). A rollback
  // to version 0 (a loss before the job's first version) carries no positions:
  // the view then gets this worker's first SetStartPosition, where it started.
  bool recovering() const { return recovering_.load(); }
  StatusOr<proto::ClusterView> WaitForRestart(std::chrono::milliseconds timeout);

 private:
  struct Part {
    uint32_t server;  // kControl for messages to the scheduler
    Message message;
    OpPtr op;
    uint32_t part_index;
  };
  struct Pending {
    OpPtr op;
    uint32_t part_index;
    uint32_t server;
    SteadyClock::time_point deadline;
  };
  static constexpr uint32_t kControl = ~0u;

  explicit Client(ClientOptions options);
  OpPtr Sparse(proto::MsgType type, std::string_view table, Buffer keys, Buffer grads,
               Callback callback);
  OpPtr Failed(const Status& status, Callback callback);
  OpPtr ControlOp(proto::MsgType type, std::string payload, std::string name);
  void Enqueue(std::vector<Part> parts);
  // I/O thread (client_io.cc).
  void IoLoop();
  void CheckScheduler(SteadyClock::time_point now);
  void ExpireRequests(SteadyClock::time_point now);
  void SendQueued();
  void OnReply(uint32_t server, Message reply);
  void OnControl(Message msg);
  void FailAll(const Status& status);
  std::string ServerName(uint32_t server) const;

  ClientOptions options_;
  proto::ClusterView view_;
  int worker_id_ = -1;
  std::unique_ptr<SchedulerLink> link_;  // owned by the I/O thread after Connect
  std::vector<zmq::socket_t> servers_;   // owned by the I/O thread after Connect
  Waker waker_;

  mutable Mutex queue_mu_;
  std::vector<Part> queue_ GUARDED_BY(queue_mu_);
  std::optional<std::string> metrics_ GUARDED_BY(queue_mu_);  // latest unsent report
  bool stopping_ GUARDED_BY(queue_mu_) = false;
  Status health_ GUARDED_BY(queue_mu_);
  std::atomic<uint64_t> next_request_id_{1};
  std::atomic<int64_t> clock_{0};
  std::atomic<uint64_t> stream_rows_{0};
  mutable Mutex start_mu_;
  uint64_t start_rows_ GUARDED_BY(start_mu_) = 0;
  std::string start_state_ GUARDED_BY(start_mu_);
  // The first SetStartPosition: where this worker started (for a rollback to
  // version 0).
  std::optional<proto::WorkerCut> first_start_ GUARDED_BY(start_mu_);

  // CLOCK to every server with this position.
  OpPtr SendClock(uint64_t stream_rows, std::string stream_state, Callback callback);
  // Sends the pending version's marker to `server` (after its CLOCK) or to all.
  void SendCut(uint32_t server);
  void SendCutToAll();

  // Recovery: set by RECOVER (I/O thread), cleared by WaitForRestart.
  std::atomic<bool> recovering_{false};
  mutable Mutex restart_mu_;
  CondVar restart_cv_;
  std::optional<proto::ClusterView> restart_view_ GUARDED_BY(restart_mu_);

  // I/O-thread state.
  uint32_t epoch_ = 0;                  // stamped on every data-plane message
  std::vector<std::string> endpoints_;  // servers' endpoints, as connected
  bool pushed_since_clock_ = false;  // a push was sent after the last CLOCK
  int64_t sent_clock_ = 0;           // the last CLOCK sent, and its stream position
  uint64_t sent_rows_ = 0;
  std::string sent_state_;
  uint64_t cut_version_ = 0;    // marker owed (0: none)
  std::vector<bool> cut_sent_;  // per server, for cut_version_
  std::unordered_map<uint64_t, Pending> pending_;
  std::vector<OpPtr> barrier_ops_;
  OpPtr finish_op_;
  std::jthread io_thread_;
};

}  // namespace eddy::worker

#endif  // EDDY_WORKER_CLIENT_H_
