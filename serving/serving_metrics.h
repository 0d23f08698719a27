// ServingMetrics: a replica's Prometheus metrics (docs/http.md, "Metrics"):
// predict latency by transport (zmq, http) and model version, requests, errors
// and rows by transport, and — read from the replica at each scrape — the
// served, newest and pinned versions, the served version's age and data
// freshness, loads and refusals.
// Ownership: borrows the registry (and, after Watch, the replica); both must
// outlive this object's last use, and the registry's last Expose().
// Thread-safety: OnPredict/OnBadRequest from any thread (lock-free but for the
// per-version series lookup, one short mutex); Watch once, before serving.
#ifndef EDDY_SERVING_SERVING_METRICS_H_
#define EDDY_SERVING_SERVING_METRICS_H_

#include <cstdint>
#include <string_view>

#include "common/metrics.h"

namespace eddy::serving {

class Replica;

enum class PredictTransport { kZmq = 0, kHttp = 1 };
std::string_view TransportName(PredictTransport t);

class ServingMetrics {
 public:
  explicit ServingMetrics(MetricsRegistry* registry);
  ServingMetrics(const ServingMetrics&) = delete;
  ServingMetrics& operator=(const ServingMetrics&) = delete;

  // One predict request answered (`ok`) or refused; `version` 0: none loaded.
  void OnPredict(PredictTransport transport, uint64_t version, double seconds, size_t rows, bool ok);
  // A request refused before it reached a model (bad JSON, bad message).
  void OnBadRequest(PredictTransport transport);
  // Mirrors `replica`'s status into the registry at every scrape, and drops
  // the latency series of versions the replica no longer caches.
  void Watch(const Replica* replica);

 private:
  MetricsRegistry* const registry_;
  HistogramFamily* latency_;
  Counter* requests_[2];
  Counter* errors_[2];
  Counter* rows_[2];
};

}  // namespace eddy::serving

#endif  // EDDY_SERVING_SERVING_METRICS_H_
