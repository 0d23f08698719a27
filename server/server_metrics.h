// ServerMetrics: a parameter server's Prometheus metrics (docs/http.md): requests,
// keys and handling time by message type, bytes in and out, and — mirrored from
// the node's stats at each scrape — sparse rows, memory, error replies, dropped
// messages and versions written. Every series carries the label server="<id>".
// Ownership: owned by the ServerNode; borrows the registry (which must outlive
// it) and removes its collector when destroyed.
// Thread-safety: OnRequest/OnReply from the node's event-loop thread only (the
// per-type series are resolved there on first use, lock-free after); the
// collector runs on the scraping thread and reads only thread-safe accessors.
#ifndef EDDY_SERVER_SERVER_METRICS_H_
#define EDDY_SERVER_SERVER_METRICS_H_

#include <array>
#include <cstddef>
#include <functional>

#include "common/metrics.h"
#include "common/proto/eddy.pb.h"

namespace eddy::server {

class ServerMetrics {
 public:
  // `report` is called by the collector on the scraping thread (thread-safe).
  ServerMetrics(MetricsRegistry* registry, int server_id,
                std::function<proto::ServerReport()> report);
  ~ServerMetrics();
  ServerMetrics(const ServerMetrics&) = delete;
  ServerMetrics& operator=(const ServerMetrics&) = delete;

  // A request of `type` received (`bytes` on the wire, `keys` sparse keys) and
  // handled in `seconds` (a pull held by the staleness bound: until held).
  void OnRequest(proto::MsgType type, size_t bytes, size_t keys, double seconds);
  void OnReply(size_t bytes) { sent_->Add(static_cast<double>(bytes)); }

 private:
  struct PerType {
    Counter* requests = nullptr;
    Counter* keys = nullptr;
    Histogram* latency = nullptr;
  };
  static constexpr int kTypes = 64;  // MsgType values below this get their own series

  MetricsRegistry* const registry_;
  const std::string server_;
  CounterFamily* requests_;
  CounterFamily* keys_;
  HistogramFamily* latency_;
  Counter* received_;
  Counter* sent_;
  std::array<PerType, kTypes + 1> types_{};  // the last: every other type
  int collector_ = -1;
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_SERVER_METRICS_H_
