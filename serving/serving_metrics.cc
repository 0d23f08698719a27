#include "serving/serving_metrics.h"

#include <algorithm>
#include <chrono>
#include <set>
#include <string>

#include "serving/replica.h"

namespace eddy::serving {

std::string_view TransportName(PredictTransport t) { return t == PredictTransport::kZmq ? "zmq" : "http"; }

ServingMetrics::ServingMetrics(MetricsRegistry* registry) : registry_(registry) {
  latency_ = registry->AddHistogram(
      "eddy_serve_predict_duration_seconds",
      "Time to answer one predict request (parse, model inputs, forward pass), by transport "
      "(zmq, http) and the model version that answered.",
      {"transport", "version"}, LatencyBuckets());
  CounterFamily* requests = registry->AddCounter(
      "eddy_serve_predict_requests_total", "Predict requests received, by transport.",
      {"transport"});
  CounterFamily* errors = registry->AddCounter(
      "eddy_serve_predict_errors_total",
      "Predict requests refused (bad JSON or rows, unknown model or version, none loaded), by "
      "transport.",
      {"transport"});
  CounterFamily* rows = registry->AddCounter(
      "eddy_serve_predicted_rows_total", "Rows given a probability, by transport.", {"transport"});
  for (PredictTransport t : {PredictTransport::kZmq, PredictTransport::kHttp}) {
    const std::string name(TransportName(t));
    requests_[static_cast<int>(t)] = requests->Get({name}).get();
    errors_[static_cast<int>(t)] = errors->Get({name}).get();
    rows_[static_cast<int>(t)] = rows->Get({name}).get();
  }
}

void ServingMetrics::OnPredict(PredictTransport transport, uint64_t version, double seconds, size_t rows,
                               bool ok) {
  const int t = static_cast<int>(transport);
  requests_[t]->Inc();
  if (!ok) {
    errors_[t]->Inc();
    return;
  }
  rows_[t]->Add(static_cast<double>(rows));
  latency_->Get({std::string(TransportName(transport)), std::to_string(version)})->Observe(seconds);
}

void ServingMetrics::OnBadRequest(PredictTransport transport) {
  requests_[static_cast<int>(transport)]->Inc();
  errors_[static_cast<int>(transport)]->Inc();
}

void ServingMetrics::Watch(const Replica* replica) {
  Gauge* served = registry_->SimpleGauge("eddy_serve_version",
                                         "The model version answering predictions (0: none yet).");
  Gauge* newest = registry_->SimpleGauge("eddy_serve_newest_version",
                                         "The newest model version loaded from the chain.");
  Gauge* pinned = registry_->SimpleGauge("eddy_serve_pinned_version",
                                         "The pinned model version (0: not pinned).");
  Gauge* cached = registry_->SimpleGauge("eddy_serve_cached_versions",
                                         "Model versions kept in memory.");
  Gauge* age = registry_->SimpleGauge(
      "eddy_serve_version_age_seconds",
      "Now minus the commit time of the served version (its manifest's created_unix_ms); -1: none.");
  Gauge* fresh = registry_->SimpleGauge(
      "eddy_serve_data_freshness_seconds",
      "Now minus the newest stream event (Kafka timestamp) the served version was trained on; "
      "-1: none (file input or no version).");
  Counter* loaded = registry_->SimpleCounter("eddy_serve_versions_loaded_total",
                                             "Model versions loaded and checked.");
  Counter* refused = registry_->SimpleCounter(
      "eddy_serve_versions_refused_total", "Model versions refused (bad files, wrong model).");
  Gauge* load_s = registry_->SimpleGauge("eddy_serve_last_load_seconds",
                                         "Time the last version took to load.");
  HistogramFamily* latency = latency_;
  registry_->AddCollector([=] {
    const proto::ServeStatus s = replica->status();
    served->Set(static_cast<double>(s.current_version()));
    newest->Set(static_cast<double>(s.newest_version()));
    pinned->Set(static_cast<double>(s.pinned_version()));
    cached->Set(static_cast<double>(s.cached_versions_size()));
    loaded->SetTotal(static_cast<double>(s.versions_loaded()));
    refused->SetTotal(static_cast<double>(s.versions_refused()));
    load_s->Set(s.last_load_seconds());
    const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
    age->Set(-1);
    fresh->Set(-1);
    if (std::shared_ptr<const LoadedModel> m = replica->serving()) {
      const proto::Manifest& manifest = m->model().manifest;
      if (manifest.created_unix_ms() > 0) {
        age->Set(std::max<double>(0, (now_ms - manifest.created_unix_ms()) / 1000.0));
      }
      int64_t newest_event = 0;
      for (const auto& p : manifest.positions()) {
        for (const auto& part : p.partitions()) {
          newest_event = std::max(newest_event, part.newest_timestamp_ms());
        }
      }
      if (newest_event > 0) fresh->Set(std::max<double>(0, (now_ms - newest_event) / 1000.0));
    }
    // Latency series only for versions still in memory (bounded cardinality).
    std::set<std::string> keep;
    for (uint64_t v : s.cached_versions()) keep.insert(std::to_string(v));
    latency->RemoveIf([&](const std::vector<std::string>& labels) {
      return keep.count(labels[1]) == 0;
    });
  });
}

}  // namespace eddy::serving
