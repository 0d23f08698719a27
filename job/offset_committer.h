// OffsetCommitter: after a model version commits, tells the stream's consumer
// group where the job is (Kafka: the next offset per partition), the way Flink
// commits offsets only when a checkpoint completes. The group's offsets then
// show the job's progress to lag tools; they are never where a resume starts
// (that is the version's own record). Commits run on a thread of their own so
// the scheduler's loop never waits on a broker; when commits fall behind, only
// the newest offsets are committed.
// Thread-safety: Offer() from any thread; the destructor commits what is still
// pending (bounded by the commit's own timeout) and joins.
#ifndef EDDY_JOB_OFFSET_COMMITTER_H_
#define EDDY_JOB_OFFSET_COMMITTER_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <thread>
#include <vector>

#include "common/mutex.h"
#include "common/proto/eddy.pb.h"
#include "common/status.h"

namespace eddy::job {

// Next offset to read, per partition.
using PartitionOffsets = std::map<int32_t, int64_t>;

// The partitions' offsets recorded in a version's cuts (WorkerCut.stream_state);
// empty when the stream is not partitioned. A message only partly trained (the
// several-rows form) is not committed: its offset is the next to read.
StatusOr<PartitionOffsets> OffsetsOfCuts(const std::vector<proto::WorkerCut>& cuts);

class OffsetCommitter {
 public:
  // `commit` performs one commit (blocking, with its own timeout).
  explicit OffsetCommitter(std::function<Status(const PartitionOffsets&)> commit);
  ~OffsetCommitter();
  OffsetCommitter(const OffsetCommitter&) = delete;
  OffsetCommitter& operator=(const OffsetCommitter&) = delete;

  // The offsets of committed version `version`; replaces any not yet committed.
  void Offer(uint64_t version, PartitionOffsets offsets);
  // The newest version whose offsets were committed (0: none), and failures.
  uint64_t committed_version() const;
  uint64_t failures() const;

 private:
  void Run();

  const std::function<Status(const PartitionOffsets&)> commit_;
  mutable Mutex mu_;
  CondVar cv_;
  std::optional<std::pair<uint64_t, PartitionOffsets>> pending_ GUARDED_BY(mu_);
  bool stopping_ GUARDED_BY(mu_) = false;
  uint64_t committed_version_ GUARDED_BY(mu_) = 0;
  uint64_t failures_ GUARDED_BY(mu_) = 0;
  std::thread thread_;  // last: started once the members exist
};

}  // namespace eddy::job

#endif  // EDDY_JOB_OFFSET_COMMITTER_H_
