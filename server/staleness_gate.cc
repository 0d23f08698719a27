#include "server/staleness_gate.h"

#include <algorithm>
#include <limits>

namespace eddy::server {

StalenessGate::StalenessGate(int num_workers, int staleness)
    : staleness_(staleness), clocks_(std::max(0, num_workers), 0) {}

bool StalenessGate::Admits(int64_t clock) const {
  return staleness_ < 0 || clock - staleness_ <= min_clock_;
}

void StalenessGate::Hold(std::string routing_id, Message request) {
  held_.push_back(Held{std::move(routing_id), std::move(request)});
}

StatusOr<std::vector<StalenessGate::Held>> StalenessGate::Advance(int worker, int64_t clock) {
  if (worker < 0 || worker >= static_cast<int>(clocks_.size())) {
    return InvalidArgumentError("CLOCK from unknown worker " + std::to_string(worker));
  }
  clocks_[worker] = std::max(clocks_[worker], clock);
  return Release();
}

std::vector<StalenessGate::Held> StalenessGate::RemoveWorker(int worker) {
  if (worker >= 0 && worker < static_cast<int>(clocks_.size())) {
    clocks_[worker] = std::numeric_limits<int64_t>::max();
  }
  return Release();
}

int StalenessGate::live_workers() const {
  int live = 0;
  for (int64_t c : clocks_) live += c != std::numeric_limits<int64_t>::max();
  return live;
}

std::vector<StalenessGate::Held> StalenessGate::Release() {
  min_clock_ = clocks_.empty() ? 0 : *std::min_element(clocks_.begin(), clocks_.end());
  std::vector<Held> released;
  // Keep arrival order among the pulls still held.
  std::deque<Held> still;
  for (Held& h : held_) {
    if (Admits(h.request.header.clock())) {
      released.push_back(std::move(h));
    } else {
      still.push_back(std::move(h));
    }
  }
  held_.swap(still);
  return released;
}

}  // namespace eddy::server
