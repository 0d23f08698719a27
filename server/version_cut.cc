#include "server/version_cut.h"

#include <algorithm>
#include <limits>

namespace eddy::server {
namespace {

// CLOCK positions kept per worker without per-clock sums (a lost worker's cut is
// its latest).
constexpr size_t kKeptPositions = 1024;
// Capture epochs kept: deltas are taken against the last committed version.
constexpr size_t kKeptEpochs = 64;

}  // namespace

VersionCut::Cut::Cut() = default;

VersionCut::VersionCut(int num_workers, bool per_clock)
    : per_clock_(per_clock),
      positions_(std::max(0, num_workers)),
      lost_(std::max(0, num_workers), false) {}

VersionCut::State VersionCut::state() const {
  if (!cut_) return State::kIdle;
  if (cut_->captured) return State::kWriting;
  return cut_->target_clock >= 0 ? State::kAwaitingClock : State::kCollecting;
}

const proto::SnapshotRequest* VersionCut::request() const {
  return cut_ && cut_->request ? &*cut_->request : nullptr;
}

VersionCut::Cut* VersionCut::CutFor(uint64_t version, Step* step) {
  if (cut_ && cut_->version > version) return nullptr;
  if (cut_ && cut_->version == version) return &*cut_;
  if (cut_) {
    // Still writing the older one: the scheduler gave up on it and will retry.
    if (cut_->captured) return nullptr;
    // A newer version started before this one was copied (the scheduler gave up
    // on it): drop it, applying every held push.
    step->abandoned = cut_->version;
    for (Held& h : cut_->held) step->release.push_back(std::move(h));
    cut_.reset();
  }
  const size_t n = positions_.size();
  cut_.emplace();
  cut_->version = version;
  cut_->marked.assign(n, false);
  cut_->marker_clock.assign(n, 0);
  cut_->marker_at.assign(n, StreamPoint());
  return &*cut_;
}

VersionCut::Step VersionCut::OnRequest(proto::SnapshotRequest request,
                                       SteadyClock::time_point now) {
  Step step;
  Cut* cut = CutFor(request.version(), &step);
  if (cut == nullptr) {
    step.ignored = "busy with version " + std::to_string(cut_->version);
    return step;
  }
  if (cut->request) return step;  // a duplicate
  if (!cut->captured &&
      std::none_of(cut->marked.begin(), cut->marked.end(), [](bool b) { return b; })) {
    cut->first_marker = now;
  }
  cut->request = std::move(request);
  // The scheduler tells the workers once every server has the request.
  step.send_ready = true;
  MaybeCapture(&step);
  return step;
}

StatusOr<VersionCut::Step> VersionCut::OnMarker(int worker, int64_t version, int64_t clock,
                                                StreamPoint at, SteadyClock::time_point now) {
  if (worker < 0 || worker >= static_cast<int>(positions_.size()) || version <= 0) {
    return InvalidArgumentError("ignored a CUT marker from sender " + std::to_string(worker) +
                                " for version " + std::to_string(version));
  }
  Step step;
  Cut* cut = CutFor(static_cast<uint64_t>(version), &step);
  if (cut == nullptr) {
    step.ignored = "marker of version " + std::to_string(version) + " while version " +
                   std::to_string(cut_->version) + " is open";
    return step;
  }
  if (cut->captured || cut->marked[worker]) {
    step.ignored = cut->captured ? "marker after the copy" : "duplicate marker";
    return step;
  }
  if (std::none_of(cut->marked.begin(), cut->marked.end(), [](bool b) { return b; })) {
    cut->first_marker = now;
  }
  cut->marked[worker] = true;
  cut->marker_clock[worker] = clock;
  cut->marker_at[worker] = std::move(at);
  MaybeCapture(&step);
  return step;
}

void VersionCut::OnClock(int worker, int64_t clock, StreamPoint at) {
  // A finished worker's last CLOCK (the largest clock) only says so; its
  // position is the one of its last real clock.
  if (worker < 0 || worker >= static_cast<int>(positions_.size()) ||
      clock == std::numeric_limits<int64_t>::max()) {
    return;
  }
  auto& p = positions_[worker];
  p.emplace_back(clock, std::move(at));
  if (per_clock_) {
    // A per-clock cut needs every worker's position at a clock not closed yet,
    // however far ahead the worker runs (pushes do not wait for clocks).
    while (p.size() > 1 && p.front().first < closed_clock_) p.pop_front();
  } else {
    while (p.size() > kKeptPositions) p.pop_front();
  }
}

VersionCut::Step VersionCut::OnWorkerLost(int worker) {
  if (worker >= 0 && worker < static_cast<int>(lost_.size())) lost_[worker] = true;
  Step step;
  MaybeCapture(&step);
  return step;
}

VersionCut::Step VersionCut::OnClocksClosed(int64_t min_clock) {
  closed_clock_ = std::max(closed_clock_, min_clock);
  Step step;
  if (cut_ && !cut_->captured && cut_->target_clock >= 0 && closed_clock_ >= cut_->target_clock) {
    // Pushes of batch k carry clock k - 1: the loop applies clocks 1..target.
    step.capture = true;
    step.bsp_clock = cut_->target_clock;
  }
  return step;
}

void VersionCut::MaybeCapture(Step* step) {
  if (!cut_ || !cut_->request || cut_->captured || cut_->target_clock >= 0) return;
  int64_t max_clock = 0;
  for (size_t w = 0; w < cut_->marked.size(); ++w) {
    if (!cut_->marked[w] && !lost_[w]) return;
    if (cut_->marked[w]) max_clock = std::max(max_clock, cut_->marker_clock[w]);
  }
  if (!per_clock_) {
    step->capture = true;
    return;
  }
  // Every clock up to the largest marker clock goes into the version; no later one.
  cut_->target_clock = max_clock;
  if (closed_clock_ >= max_clock) {
    // Clock max_clock is applied now (sums are applied as soon as a clock closes)
    // and no later clock can be, since the last marker's sender is at max_clock.
    step->capture = true;
    step->bsp_clock = max_clock;
  }
}

bool VersionCut::HoldsPushesOf(int worker) const {
  return !per_clock_ && cut_ && !cut_->captured && worker >= 0 &&
         worker < static_cast<int>(cut_->marked.size()) && cut_->marked[worker];
}

void VersionCut::Hold(std::string routing_id, Message push) {
  cut_->held.push_back(Held{std::move(routing_id), std::move(push)});
}

StatusOr<uint32_t> VersionCut::SinceEpoch() const {
  if (!cut_ || !cut_->request) return FailedPreconditionError("no version requested");
  const uint64_t parent = cut_->request->parent_version();
  if (parent == 0) return 0u;
  auto it = epochs_.find(parent);
  if (it == epochs_.end() || it->second == 0) {
    return FailedPreconditionError("no capture of parent version " + std::to_string(parent) +
                                   " on this server (restarted?): take a full version");
  }
  return it->second;
}

std::optional<StreamPoint> VersionCut::PositionAt(int worker, int64_t clock) const {
  // Before its first clock a worker is where it started, as its marker says.
  if (clock == 0) return cut_ && cut_->marked[worker] ? cut_->marker_at[worker] : StreamPoint();
  for (auto it = positions_[worker].rbegin(); it != positions_[worker].rend(); ++it) {
    if (it->first == clock) return it->second;
  }
  return std::nullopt;
}

std::vector<proto::WorkerCut> VersionCut::WorkerCuts() const {
  const Cut& cut = *cut_;
  const int64_t bsp_clock = per_clock_ ? cut.target_clock : -1;
  std::vector<proto::WorkerCut> cuts;
  auto set_position = [](const StreamPoint& at, proto::WorkerCut* c) {
    c->set_rows_consumed(at.rows);
    c->set_stream_state(at.state);
  };
  for (size_t w = 0; w < cut.marked.size(); ++w) {
    const auto& positions = positions_[w];
    proto::WorkerCut& c = cuts.emplace_back();
    c.set_worker(static_cast<int32_t>(w));
    if (bsp_clock >= 0) {
      c.set_clock(bsp_clock);
      std::optional<StreamPoint> at = PositionAt(static_cast<int>(w), bsp_clock);
      if (!at && !positions.empty()) at = positions.back().second;  // lost
      set_position(at.value_or(StreamPoint()), &c);
    } else if (cut.marked[w]) {
      c.set_clock(cut.marker_clock[w]);
      set_position(cut.marker_at[w], &c);
    } else if (!positions.empty()) {  // lost: everything it sent is in
      c.set_clock(positions.back().first);
      set_position(positions.back().second, &c);
    }
  }
  return cuts;
}

std::vector<VersionCut::Held> VersionCut::Captured(SteadyClock::time_point copied,
                                                   StatusOr<uint32_t> epoch) {
  Cut& cut = *cut_;
  if (epoch.ok()) {
    epochs_[cut.version] = *epoch;
    while (epochs_.size() > kKeptEpochs) epochs_.erase(epochs_.begin());
  } else {
    cut.error = std::string(epoch.status().message());
  }
  cut.cuts = WorkerCuts();
  cut.captured = true;
  cut.window_seconds = std::chrono::duration<double>(copied - cut.first_marker).count();
  std::vector<Held> held = std::move(cut.held);
  cut.held.clear();
  return held;
}

proto::SnapshotReport VersionCut::Report(double pause_seconds) const {
  proto::SnapshotReport report;
  if (!cut_) return report;
  report.set_version(cut_->version);
  for (const proto::WorkerCut& c : cut_->cuts) *report.add_cuts() = c;
  report.set_pause_seconds(pause_seconds);
  report.set_window_seconds(cut_->window_seconds);
  report.set_error(cut_->error);
  return report;
}

void VersionCut::Written(uint64_t version) {
  if (cut_ && cut_->version == version) cut_.reset();
}

}  // namespace eddy::server
