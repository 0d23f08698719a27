// Metrics for Prometheus: counters, gauges and histograms (fixed buckets) in
// labelled families, kept by a MetricsRegistry that is passed explicitly to
// whatever records into it (there is no global registry), and written out in
// the Prometheus text exposition format 0.0.4 (docs/http.md lists the metrics).
//
//   MetricsRegistry registry;
//   HistogramFamily* latency = registry.AddHistogram(
//       "eddy_predict_duration_seconds", "Predict latency.", {"transport"},
//       LatencyBuckets());
//   Histogram* http = latency->Get({"http"}).get();  // resolve once...
//   http->Observe(0.0012);                           // ...lock-free after that
//   std::string text = registry.Expose();
//
// Ownership: the registry owns its families, a family its series (shared_ptr:
// a series removed with RemoveIf stays alive while a recorder still holds it).
// Thread-safety: Counter, Gauge and Histogram updates are lock-free atomics and
// may come from any thread. Family::Get/RemoveIf and the registry's Add*/
// AddCollector/Expose take a mutex and may be called from any thread; resolve a
// series once and keep the pointer where the path is hot. Collectors run on the
// thread that calls Expose().
#ifndef EDDY_COMMON_METRICS_H_
#define EDDY_COMMON_METRICS_H_

#include <glog/logging.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/mutex.h"

namespace eddy {

// A value that only goes up (or is reset by a restart). Add() of a negative
// amount is a programming error (DCHECK).
class Counter {
 public:
  void Inc() { Add(1.0); }
  void Add(double amount);
  // Mirrors a monotonic total kept elsewhere (e.g. a stats() struct read by a
  // collector): sets the value; callers pass non-decreasing totals.
  void SetTotal(double total) { value_.store(total, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double amount);
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into fixed buckets (upper bounds, ascending, +Inf
// implied), with their sum. Exposed cumulatively (_bucket{le=...}, _sum, _count).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void Observe(double v);

  struct Snapshot {
    std::vector<double> bounds;       // without +Inf
    std::vector<uint64_t> cumulative;  // bounds.size() + 1 (the last is +Inf = count)
    double sum = 0;
  };
  Snapshot Read() const;
  const std::vector<double>& bounds() const { return bounds_; }

 private:
  const std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;  // per bucket, not cumulative
  std::atomic<double> sum_{0.0};
};

// Buckets for latencies from 50 µs to 10 s (seconds).
std::vector<double> LatencyBuckets();
// Buckets 1, 2, 4, ... up to `max` (e.g. rows per request).
std::vector<double> PowersOfTwoBuckets(double max);

enum class MetricType { kCounter, kGauge, kHistogram };

// The series of one metric name, one per combination of label values.
template <typename M>
class Family {
 public:
  using Factory = std::function<std::shared_ptr<M>()>;
  Family(std::vector<std::string> label_names, Factory factory)
      : label_names_(std::move(label_names)), factory_(std::move(factory)) {}

  // The series with these label values (in label_names() order; the count
  // must match: CHECKed), created on first use.
  std::shared_ptr<M> Get(const std::vector<std::string>& values) EXCLUDES(mu_);
  // Drops the series whose label values match `pred` (e.g. evicted versions).
  void RemoveIf(const std::function<bool(const std::vector<std::string>&)>& pred) EXCLUDES(mu_);
  // Every series, ordered by label values.
  std::vector<std::pair<std::vector<std::string>, std::shared_ptr<M>>> Series() const
      EXCLUDES(mu_);
  const std::vector<std::string>& label_names() const { return label_names_; }

 private:
  const std::vector<std::string> label_names_;
  const Factory factory_;
  mutable Mutex mu_;
  std::map<std::vector<std::string>, std::shared_ptr<M>> series_ GUARDED_BY(mu_);
};

using CounterFamily = Family<Counter>;
using GaugeFamily = Family<Gauge>;
using HistogramFamily = Family<Histogram>;

class MetricsRegistry {
 public:
  MetricsRegistry() = default;
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Adds a family (or returns the one already registered under `name` with the
  // same type and label names; anything else is a programming error, CHECKed,
  // as are names that do not match [a-zA-Z_:][a-zA-Z0-9_:]*).
  CounterFamily* AddCounter(const std::string& name, const std::string& help,
                            std::vector<std::string> label_names = {});
  GaugeFamily* AddGauge(const std::string& name, const std::string& help,
                        std::vector<std::string> label_names = {});
  HistogramFamily* AddHistogram(const std::string& name, const std::string& help,
                                std::vector<std::string> label_names, std::vector<double> bounds);
  // Shorthands for a series without labels.
  Counter* SimpleCounter(const std::string& name, const std::string& help);
  Gauge* SimpleGauge(const std::string& name, const std::string& help);

  // `fn` runs at the start of every Expose(), on its thread: it sets gauges and
  // mirrored counters from state kept elsewhere. It must not call Expose().
  // Returns an id for RemoveCollector.
  int AddCollector(std::function<void()> fn) EXCLUDES(mu_);
  // Removes a collector; once it returns, `fn` is not running and never runs
  // again (so what it reads may be destroyed). The series it set stay.
  void RemoveCollector(int id) EXCLUDES(mu_, expose_mu_);

  // Runs the collectors, then writes every family in name order, in the text
  // exposition format 0.0.4 (Content-Type: kExpositionContentType).
  std::string Expose() const EXCLUDES(mu_, expose_mu_);

  static constexpr const char* kExpositionContentType = "text/plain; version=0.0.4; charset=utf-8";

 private:
  struct Entry {
    MetricType type;
    std::string help;
    std::vector<std::string> label_names;
    std::vector<double> bounds;  // histograms
    std::unique_ptr<CounterFamily> counters;
    std::unique_ptr<GaugeFamily> gauges;
    std::unique_ptr<HistogramFamily> histograms;
  };
  Entry* FindOrAdd(const std::string& name, MetricType type, const std::string& help,
                   std::vector<std::string> label_names, std::vector<double> bounds)
      EXCLUDES(mu_);

  mutable Mutex mu_;
  std::map<std::string, Entry> entries_ GUARDED_BY(mu_);
  std::map<int, std::function<void()>> collectors_ GUARDED_BY(mu_);
  int next_collector_ GUARDED_BY(mu_) = 0;
  // Serializes Expose() (collectors are not required to be reentrant).
  mutable Mutex expose_mu_;
};

// Text exposition helpers (exposed for tests): a sample value (+Inf, -Inf,
// NaN, otherwise the shortest round-trip decimal), and a label value escaped
// (backslash, double quote, newline).
std::string FormatMetricValue(double v);
std::string EscapeLabelValue(std::string_view v);

// ---------------------------------------------------------------------------
template <typename M>
std::shared_ptr<M> Family<M>::Get(const std::vector<std::string>& values) {
  CHECK_EQ(values.size(), label_names_.size()) << "label values do not match the label names";
  MutexLock lock(&mu_);
  auto it = series_.find(values);
  if (it == series_.end()) it = series_.emplace(values, factory_()).first;
  return it->second;
}

template <typename M>
void Family<M>::RemoveIf(const std::function<bool(const std::vector<std::string>&)>& pred) {
  MutexLock lock(&mu_);
  std::erase_if(series_, [&](const auto& kv) { return pred(kv.first); });
}

template <typename M>
std::vector<std::pair<std::vector<std::string>, std::shared_ptr<M>>> Family<M>::Series() const {
  MutexLock lock(&mu_);
  return {series_.begin(), series_.end()};
}

}  // namespace eddy

#endif  // EDDY_COMMON_METRICS_H_
