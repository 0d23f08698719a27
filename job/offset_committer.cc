#include "job/offset_committer.h"

#include <glog/logging.h>

#include <utility>

namespace eddy::job {

StatusOr<PartitionOffsets> OffsetsOfCuts(const std::vector<proto::WorkerCut>& cuts) {
  PartitionOffsets offsets;
  for (const proto::WorkerCut& c : cuts) {
    if (c.stream_state().empty()) continue;
    proto::Manifest::StreamPosition position;
    if (!position.ParseFromString(c.stream_state())) {
      return DataLossError("worker " + std::to_string(c.worker()) +
                           "'s stream position does not parse");
    }
    for (const auto& p : position.partitions()) offsets[p.partition()] = p.offset();
  }
  return offsets;
}

OffsetCommitter::OffsetCommitter(std::function<Status(const PartitionOffsets&)> commit)
    : commit_(std::move(commit)), thread_([this] { Run(); }) {}

OffsetCommitter::~OffsetCommitter() {
  {
    MutexLock lock(&mu_);
    stopping_ = true;
  }
  cv_.NotifyAll();
  thread_.join();
}

void OffsetCommitter::Offer(uint64_t version, PartitionOffsets offsets) {
  if (offsets.empty()) return;
  {
    MutexLock lock(&mu_);
    pending_.emplace(version, std::move(offsets));
  }
  cv_.NotifyAll();
}

uint64_t OffsetCommitter::committed_version() const {
  MutexLock lock(&mu_);
  return committed_version_;
}

uint64_t OffsetCommitter::failures() const {
  MutexLock lock(&mu_);
  return failures_;
}

void OffsetCommitter::Run() {
  while (true) {
    std::pair<uint64_t, PartitionOffsets> next;
    {
      MutexLock lock(&mu_);
      while (!stopping_ && !pending_) cv_.Wait(&mu_);
      if (!pending_) return;  // stopping with nothing left
      next = std::move(*pending_);
      pending_.reset();
    }
    Status s = commit_(next.second);
    MutexLock lock(&mu_);
    if (s.ok()) {
      committed_version_ = next.first;
    } else if (failures_++ < 10 || failures_ % 100 == 0) {
      // The job goes on: group offsets are for monitoring, versions hold the truth.
      LOG(WARNING) << "offsets of version " << next.first
                   << " not committed to the consumer group (" << failures_
                   << " failure(s) so far): " << s;
    }
  }
}

}  // namespace eddy::job
