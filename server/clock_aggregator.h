// ClockAggregator: the synchronous (BSP) way of applying gradients. Pushes made
// at clock c are summed per key (sparse) or per element (dense) instead of being
// applied at once; when every worker has finished clock c the server applies the
// sum (or the mean) as one push per table, so a stateful optimizer (AdaGrad, Adam,
// FTRL) sees one gradient per clock, exactly as one worker with W times the batch.
// Thread-safety: not thread-safe; owned by the server's event-loop thread.
#ifndef EDDY_SERVER_CLOCK_AGGREGATOR_H_
#define EDDY_SERVER_CLOCK_AGGREGATOR_H_

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/message.h"

namespace eddy::server {

class ClockAggregator {
 public:
  // Adds a validated PUSH or PUSH_DENSE (its header's clock says which clock).
  void Add(const Message& push);
  // Removes the sums of every clock below `clock`, oldest first, as PUSH and
  // PUSH_DENSE messages with the gradients multiplied by `scale` (1 for a sum,
  // 1/W for a mean).
  std::vector<Message> TakeBefore(int64_t clock, float scale);
  // The same with each clock's gradients divided by the number of workers that
  // pushed in that clock (the mean of the workers' gradients, also when some
  // workers had no batch left for it).
  std::vector<Message> TakeMeanBefore(int64_t clock);
  // Clocks with gradients waiting.
  size_t pending_clocks() const { return clocks_.size(); }

 private:
  struct SparseSum {
    uint32_t dim = 0;
    std::unordered_map<uint64_t, uint32_t> index;  // key -> row in keys/sums
    std::vector<uint64_t> keys;
    std::vector<float> sums;
  };
  struct DenseSum {
    uint64_t offset = 0;
    std::vector<float> sums;
  };
  struct ClockSums {
    std::set<int32_t> senders;
    std::map<std::string, SparseSum> sparse;
    std::map<std::string, DenseSum> dense;
  };
  std::vector<Message> Take(int64_t clock, float scale, bool mean);
  std::map<int64_t, ClockSums> clocks_;
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_CLOCK_AGGREGATOR_H_
