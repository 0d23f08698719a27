// What each eddy_bench worker reports to the scheduler, and the one-line summary
// the scheduler prints from all reports.
// Thread-safety: values.
#ifndef EDDY_BENCH_BENCH_REPORT_H_
#define EDDY_BENCH_BENCH_REPORT_H_

#include <string>
#include <vector>

#include "common/status.h"

namespace eddy::bench {

struct WorkerReport {
  double sparse_seconds = 0;
  double dense_seconds = 0;
  std::vector<float> sparse_latency_us;  // one per measured request (push + pull)
  std::vector<float> dense_latency_us;

  std::string Serialize() const;
  static StatusOr<WorkerReport> Parse(const std::string& bytes);
};

// The q-quantile (0..1) of `values` by nearest rank; 0 when empty.
double Percentile(std::vector<float> values, double q);

class Summary {
 public:
  void Add(const WorkerReport& report);
  // e.g. "sparse <config>: 812 req/s, 8.12 M keys/s, 1169 MB/s, p50 1.20 ms, p99 1.90 ms"
  std::string Line(const std::string& config, uint64_t keys_per_request, int dim,
                   uint64_t dense_elements, bool fused) const;

 private:
  double sparse_rate_ = 0, dense_rate_ = 0;  // requests/s summed over workers
  std::vector<float> sparse_, dense_;
};

}  // namespace eddy::bench

#endif  // EDDY_BENCH_BENCH_REPORT_H_
