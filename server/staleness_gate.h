// StalenessGate: the bounded-staleness rule of a server. Each worker has a clock
// (mini-batches it has finished, announced with CLOCK messages); a pull made at
// clock c may be answered only once every worker has finished clock c - s.
// s = 0 makes every pull wait for the slowest worker (the synchronous pull of
// BSP), s > 0 is SSP, s < 0 never waits (ASP). Pulls that must wait are held
// here, in arrival order, until clocks advance.
// Thread-safety: not thread-safe; owned by the server's event-loop thread.
#ifndef EDDY_SERVER_STALENESS_GATE_H_
#define EDDY_SERVER_STALENESS_GATE_H_

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "common/message.h"

namespace eddy::server {

class StalenessGate {
 public:
  // A request held back, with the routing id to answer.
  struct Held {
    std::string routing_id;
    Message request;
  };

  StalenessGate(int num_workers, int staleness);

  bool bounded() const { return staleness_ >= 0; }
  // True when a pull at `clock` may be answered now.
  bool Admits(int64_t clock) const;
  // Holds a pull that may not be answered yet.
  void Hold(std::string routing_id, Message request);
  // Records that `worker` finished `clock` (clocks never go back). Errors on an
  // unknown worker id. Returns the held pulls that may now be answered, in
  // arrival order.
  StatusOr<std::vector<Held>> Advance(int worker, int64_t clock);

  // A lost worker no longer counts toward the bound. Returns the held pulls that
  // may now be answered.
  std::vector<Held> RemoveWorker(int worker);

  int64_t min_clock() const { return min_clock_; }
  // Workers that still count (not removed).
  int live_workers() const;
  size_t held() const { return held_.size(); }

 private:
  const int staleness_;
  std::vector<int64_t> clocks_;
  int64_t min_clock_ = 0;
  std::deque<Held> held_;

  std::vector<Held> Release();
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_STALENESS_GATE_H_
