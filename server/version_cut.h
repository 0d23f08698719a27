// VersionCut: a server's side of the model-version protocol (docs/protocol.md,
// "Model versions") as a state machine without sockets or store: events in (a
// SNAPSHOT request, workers' CUT markers and CLOCK positions, lost workers,
// clocks closed under per-clock sums, the capture taken, the files written) and
// decisions out (hold a worker's push, capture now and at which clock, release
// the held pushes, the report). ServerNode performs the I/O it asks for.
// Thread-safety: not thread-safe; owned by the server's event-loop thread.
#ifndef EDDY_SERVER_VERSION_CUT_H_
#define EDDY_SERVER_VERSION_CUT_H_

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/message.h"
#include "common/net.h"
#include "common/proto/eddy.pb.h"
#include "common/status.h"

namespace eddy::server {

// A worker's stream position as it reports it with CLOCK and CUT: rows consumed
// and, for a partitioned stream, its serialized partition offsets.
struct StreamPoint {
  StreamPoint(uint64_t rows_consumed = 0, std::string stream_state = {})  // NOLINT: implicit
      : rows(rows_consumed), state(std::move(stream_state)) {}
  uint64_t rows;
  std::string state;
};

class VersionCut {
 public:
  // kIdle: no version open. kCollecting: waiting for the request and every live
  // worker's marker. kAwaitingClock (per-clock sums): every marker is in, the
  // copy waits for clock target_clock() to close. kWriting: copied, the files are
  // being written.
  enum class State { kIdle, kCollecting, kAwaitingClock, kWriting };

  // A push of a marked worker, held until the copy; `routing_id` is set where the
  // reply is still owed (PUSH_PULL).
  struct Held {
    std::string routing_id;
    Message push;
  };

  // What the event loop does after an event, in this order: apply (and answer)
  // `release`; send SNAPSHOT_READY when `send_ready`; when `capture`: apply the
  // sums of the clocks before `bsp_clock` (per-clock sums), copy the store and
  // call Captured().
  struct Step {
    std::vector<Held> release;
    bool send_ready = false;
    bool capture = false;
    int64_t bsp_clock = -1;  // -1: the cut is the markers (no per-clock sums)
    uint64_t abandoned = 0;  // an open version given up for this one (for the log)
    // Why an event was ignored (empty when it was not): for the log.
    std::string ignored;
  };

  // `per_clock`: pushes are summed per clock and applied when a clock closes (BSP).
  VersionCut(int num_workers, bool per_clock);

  State state() const;
  // The open version (0 when idle).
  uint64_t version() const { return cut_ ? cut_->version : 0; }
  // Capture once this clock has closed (kAwaitingClock), else -1.
  int64_t target_clock() const { return cut_ ? cut_->target_clock : -1; }
  // The open version's request (nullptr when none came yet).
  const proto::SnapshotRequest* request() const;
  size_t held() const { return cut_ ? cut_->held.size() : 0; }

  // SNAPSHOT(v) from the scheduler (v > 0). A newer version abandons an open one
  // not yet copied (its held pushes are released); one being written makes the
  // request ignored (the scheduler retries with a later version).
  Step OnRequest(proto::SnapshotRequest request, SteadyClock::time_point now);
  // CUT(version) from `worker` at its `clock` and stream position `at`. Errors
  // on an unknown worker or a version <= 0; markers of older versions, duplicates
  // and markers after the copy are ignored.
  StatusOr<Step> OnMarker(int worker, int64_t version, int64_t clock, StreamPoint at,
                          SteadyClock::time_point now);
  // CLOCK from `worker`: its stream position `at` after `clock` (a lost worker's
  // cut and the per-clock cut use these). The finished clock (INT64_MAX) and
  // unknown workers are ignored.
  void OnClock(int worker, int64_t clock, StreamPoint at);
  // The worker no longer counts: the cut stops waiting for its marker.
  Step OnWorkerLost(int worker);
  // Per-clock sums: every clock before `min_clock` is closed. Returns a capture
  // when the open cut waited for it.
  Step OnClocksClosed(int64_t min_clock);

  // True when a push of `worker` belongs to the next version and must be held.
  bool HoldsPushesOf(int worker) const;
  // Holds a push of a worker HoldsPushesOf() is true for.
  void Hold(std::string routing_id, Message push);

  // The store was copied at `copied` (after a Step with capture) with this
  // epoch, or not (the error for the report). Returns the held pushes to apply
  // now; the cut moves to kWriting.
  std::vector<Held> Captured(SteadyClock::time_point copied, StatusOr<uint32_t> epoch);
  // The epoch to export changes since for the open request: 0 for a full
  // version, the parent's capture epoch for a delta, an error when this server
  // has not copied the parent (restarted?).
  StatusOr<uint32_t> SinceEpoch() const;
  // The report of the copied version, without files (kWriting only): version,
  // the workers' cuts, pause, window and error. `pause_seconds`: the loop stall.
  proto::SnapshotReport Report(double pause_seconds) const;
  // The files of `version` are written (or failed): the cut ends when it is the
  // open one. The report is sent in any case.
  void Written(uint64_t version);

 private:
  struct Cut {
    Cut();  // out of line: clang needs Cut complete for std::optional<Cut>
    uint64_t version = 0;
    std::vector<bool> marked;
    std::vector<int64_t> marker_clock;
    std::vector<StreamPoint> marker_at;
    int64_t target_clock = -1;
    bool captured = false;
    std::optional<proto::SnapshotRequest> request;
    std::vector<Held> held;
    std::vector<proto::WorkerCut> cuts;
    SteadyClock::time_point first_marker;  // or the request, when no marker came yet
    double window_seconds = 0;
    std::string error;
  };

  // The cut of `version`, started if new; nullptr when it is older than the
  // open one or the open one is being written. Releases into `step`.
  Cut* CutFor(uint64_t version, Step* step);
  // Captures when the cut is complete (or sets the clock to capture at).
  void MaybeCapture(Step* step);
  // The position `worker` reported with `clock`, if still known.
  std::optional<StreamPoint> PositionAt(int worker, int64_t clock) const;
  std::vector<proto::WorkerCut> WorkerCuts() const;

  const bool per_clock_;
  std::vector<std::deque<std::pair<int64_t, StreamPoint>>> positions_;  // (clock, position)
  std::vector<bool> lost_;
  int64_t closed_clock_ = 0;
  std::optional<Cut> cut_;
  std::map<uint64_t, uint32_t> epochs_;  // version -> capture epoch
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_VERSION_CUT_H_
