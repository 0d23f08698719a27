#include "common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>

namespace eddy {
namespace {

bool ValidName(std::string_view name, bool label) {
  if (name.empty()) return false;
  auto first = [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (!label && c == ':');
  };
  if (!first(name[0])) return false;
  return std::all_of(name.begin() + 1, name.end(),
                     [&](char c) { return first(c) || (c >= '0' && c <= '9'); });
}

std::string EscapeHelp(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// `{a="x",b="y"}` (with `extra`, e.g. le="0.5", last); empty when no labels at all.
std::string LabelText(const std::vector<std::string>& names, const std::vector<std::string>& values,
                      const std::string& extra = {}) {
  if (names.empty() && extra.empty()) return {};
  std::string out = "{";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ",";
    out += names[i] + "=\"" + EscapeLabelValue(values[i]) + "\"";
  }
  if (!extra.empty()) {
    if (!names.empty()) out += ",";
    out += extra;
  }
  return out + "}";
}

const char* TypeName(MetricType t) {
  switch (t) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

}  // namespace

void Counter::Add(double amount) {
  DCHECK_GE(amount, 0.0) << "counters only go up";
  value_.fetch_add(amount, std::memory_order_relaxed);
}

void Gauge::Add(double amount) { value_.fetch_add(amount, std::memory_order_relaxed); }

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)), counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  CHECK(std::is_sorted(bounds_.begin(), bounds_.end()) &&
        std::adjacent_find(bounds_.begin(), bounds_.end()) == bounds_.end())
      << "histogram bounds must be strictly ascending";
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  // The first bucket whose upper bound is >= v (le: less or equal).
  const size_t i = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::Read() const {
  Snapshot s;
  s.bounds = bounds_;
  s.cumulative.resize(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = total;
  }
  s.sum = sum_.load(std::memory_order_relaxed);
  return s;
}

std::vector<double> LatencyBuckets() {
  return {0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
          0.025,   0.05,   0.1,     0.25,   0.5,   1,      2.5,    5,    10};
}

std::vector<double> PowersOfTwoBuckets(double max) {
  std::vector<double> b;
  for (double x = 1; x <= max; x *= 2) b.push_back(x);
  return b;
}

std::string FormatMetricValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";
  return std::string(buf, end);
}

std::string EscapeLabelValue(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

MetricsRegistry::Entry* MetricsRegistry::FindOrAdd(const std::string& name, MetricType type,
                                                   const std::string& help,
                                                   std::vector<std::string> label_names,
                                                   std::vector<double> bounds) {
  CHECK(ValidName(name, false)) << "invalid metric name '" << name << "'";
  for (const std::string& l : label_names) {
    CHECK(ValidName(l, true) && l != "le" && !l.starts_with("__"))
        << "metric " << name << ": invalid label name '" << l << "'";
  }
  MutexLock lock(&mu_);
  auto it = entries_.find(name);
  if (it != entries_.end()) {
    CHECK(it->second.type == type && it->second.label_names == label_names &&
          it->second.bounds == bounds)
        << "metric " << name << " registered twice with different types, labels or buckets";
    return &it->second;
  }
  Entry& e = entries_[name];
  e.type = type;
  e.help = help;
  e.label_names = label_names;
  e.bounds = bounds;
  switch (type) {
    case MetricType::kCounter:
      e.counters = std::make_unique<CounterFamily>(
          std::move(label_names), [] { return std::make_shared<eddy::Counter>(); });
      break;
    case MetricType::kGauge:
      e.gauges = std::make_unique<GaugeFamily>(std::move(label_names),
                                               [] { return std::make_shared<eddy::Gauge>(); });
      break;
    case MetricType::kHistogram:
      e.histograms = std::make_unique<HistogramFamily>(
          std::move(label_names), [b = std::move(bounds)] { return std::make_shared<Histogram>(b); });
      break;
  }
  return &e;
}

CounterFamily* MetricsRegistry::AddCounter(const std::string& name, const std::string& help,
                                           std::vector<std::string> label_names) {
  return FindOrAdd(name, MetricType::kCounter, help, std::move(label_names), {})->counters.get();
}

GaugeFamily* MetricsRegistry::AddGauge(const std::string& name, const std::string& help,
                                       std::vector<std::string> label_names) {
  return FindOrAdd(name, MetricType::kGauge, help, std::move(label_names), {})->gauges.get();
}

HistogramFamily* MetricsRegistry::AddHistogram(const std::string& name, const std::string& help,
                                               std::vector<std::string> label_names,
                                               std::vector<double> bounds) {
  return FindOrAdd(name, MetricType::kHistogram, help, std::move(label_names), std::move(bounds))
      ->histograms.get();
}

Counter* MetricsRegistry::SimpleCounter(const std::string& name, const std::string& help) {
  return AddCounter(name, help)->Get({}).get();
}

Gauge* MetricsRegistry::SimpleGauge(const std::string& name, const std::string& help) {
  return AddGauge(name, help)->Get({}).get();
}

int MetricsRegistry::AddCollector(std::function<void()> fn) {
  MutexLock lock(&mu_);
  const int id = next_collector_++;
  collectors_.emplace(id, std::move(fn));
  return id;
}

void MetricsRegistry::RemoveCollector(int id) {
  MutexLock expose_lock(&expose_mu_);  // waits for a running Expose()
  MutexLock lock(&mu_);
  collectors_.erase(id);
}

std::string MetricsRegistry::Expose() const {
  MutexLock expose_lock(&expose_mu_);
  std::vector<std::function<void()>> collectors;
  {
    MutexLock lock(&mu_);
    for (const auto& [id, fn] : collectors_) collectors.push_back(fn);
  }
  for (const auto& fn : collectors) fn();
  std::string out;
  MutexLock lock(&mu_);
  for (const auto& [name, e] : entries_) {
    out += "# HELP " + name + " " + EscapeHelp(e.help) + "\n";
    out += "# TYPE " + name + " " + TypeName(e.type) + "\n";
    const auto& names = e.label_names;
    switch (e.type) {
      case MetricType::kCounter:
        for (const auto& [values, c] : e.counters->Series()) {
          out += name + LabelText(names, values) + " " + FormatMetricValue(c->value()) + "\n";
        }
        break;
      case MetricType::kGauge:
        for (const auto& [values, g] : e.gauges->Series()) {
          out += name + LabelText(names, values) + " " + FormatMetricValue(g->value()) + "\n";
        }
        break;
      case MetricType::kHistogram:
        for (const auto& [values, h] : e.histograms->Series()) {
          const Histogram::Snapshot s = h->Read();
          for (size_t i = 0; i <= s.bounds.size(); ++i) {
            const std::string le =
                "le=\"" + (i < s.bounds.size() ? FormatMetricValue(s.bounds[i]) : "+Inf") + "\"";
            out += name + "_bucket" + LabelText(names, values, le) + " " +
                   std::to_string(s.cumulative[i]) + "\n";
          }
          out += name + "_sum" + LabelText(names, values) + " " + FormatMetricValue(s.sum) + "\n";
          out += name + "_count" + LabelText(names, values) + " " +
                 std::to_string(s.cumulative.back()) + "\n";
        }
        break;
    }
  }
  return out;
}

}  // namespace eddy
