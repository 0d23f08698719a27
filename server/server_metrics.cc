#include "server/server_metrics.h"

namespace eddy::server {

ServerMetrics::ServerMetrics(MetricsRegistry* registry, int server_id,
                             std::function<proto::ServerReport()> report)
    : registry_(registry), server_(std::to_string(server_id)) {
  requests_ = registry->AddCounter("eddy_server_requests_total",
                                   "Data-plane requests received, by message type.",
                                   {"server", "type"});
  keys_ = registry->AddCounter("eddy_server_request_keys_total",
                               "Sparse keys (rows) in the requests, by message type.",
                               {"server", "type"});
  latency_ = registry->AddHistogram(
      "eddy_server_request_duration_seconds",
      "Time to handle a data-plane request, from receipt to reply (a pull held by the "
      "staleness bound: until it is held), by message type.",
      {"server", "type"}, LatencyBuckets());
  received_ = registry->AddCounter("eddy_server_received_bytes_total",
                                   "Bytes of data-plane requests received.", {"server"})
                  ->Get({server_})
                  .get();
  sent_ = registry->AddCounter("eddy_server_sent_bytes_total",
                               "Bytes of data-plane replies sent.", {"server"})
              ->Get({server_})
              .get();
  GaugeFamily* rows = registry->AddGauge("eddy_server_sparse_rows",
                                         "Sparse rows held (all tables).", {"server"});
  GaugeFamily* memory = registry->AddGauge("eddy_server_memory_bytes",
                                           "Bytes of table memory held.", {"server"});
  CounterFamily* errors = registry->AddCounter(
      "eddy_server_error_replies_total", "Requests answered with an error status.", {"server"});
  CounterFamily* dropped = registry->AddCounter(
      "eddy_server_dropped_messages_total", "Frames that could not be parsed at all.", {"server"});
  Gauge* rows_s = rows->Get({server_}).get();
  Gauge* memory_s = memory->Get({server_}).get();
  Counter* errors_s = errors->Get({server_}).get();
  Counter* dropped_s = dropped->Get({server_}).get();
  collector_ = registry->AddCollector([=, report = std::move(report)] {
    const proto::ServerReport r = report();
    rows_s->Set(static_cast<double>(r.sparse_rows()));
    memory_s->Set(static_cast<double>(r.memory_bytes()));
    errors_s->SetTotal(static_cast<double>(r.error_replies()));
    dropped_s->SetTotal(static_cast<double>(r.dropped_messages()));
  });
}

ServerMetrics::~ServerMetrics() { registry_->RemoveCollector(collector_); }

void ServerMetrics::OnRequest(proto::MsgType type, size_t bytes, size_t keys, double seconds) {
  const int t = type >= 0 && type < kTypes ? static_cast<int>(type) : kTypes;
  PerType& p = types_[t];
  if (p.requests == nullptr) {
    std::string name = t < kTypes ? proto::MsgType_Name(type) : "OTHER";
    if (name.empty()) name = std::to_string(t);
    p.requests = requests_->Get({server_, name}).get();
    p.keys = keys_->Get({server_, name}).get();
    p.latency = latency_->Get({server_, name}).get();
  }
  p.requests->Inc();
  if (keys > 0) p.keys->Add(static_cast<double>(keys));
  p.latency->Observe(seconds);
  received_->Add(static_cast<double>(bytes));
}

}  // namespace eddy::server
