// A small parser of the Prometheus text exposition format (0.0.4) for tests:
// checks that every sample belongs to a family with # HELP and # TYPE lines,
// that counters end in _total, and that each histogram's buckets are
// cumulative (non-decreasing up to le="+Inf", which equals _count).
#ifndef EDDY_TESTS_TESTING_PROMETHEUS_TEXT_H_
#define EDDY_TESTS_TESTING_PROMETHEUS_TEXT_H_

#include <cstdlib>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace eddy::testing {

struct PromSample {
  std::string name;    // e.g. eddy_x_bucket
  std::string labels;  // the text between { and }, empty when none
  double value = 0;
};

struct PromText {
  std::map<std::string, std::string> types;  // family -> counter | gauge | histogram
  std::map<std::string, std::string> help;
  std::vector<PromSample> samples;
  std::vector<std::string> errors;  // what does not follow the format

  // The value of `name` whose labels contain every `label_parts` (e.g.
  // transport="http"); nullopt when none.
  std::optional<double> Value(const std::string& name,
                              const std::vector<std::string>& label_parts = {}) const {
    for (const PromSample& s : samples) {
      if (s.name != name) continue;
      bool all = true;
      for (const std::string& p : label_parts) all = all && s.labels.find(p) != std::string::npos;
      if (all) return s.value;
    }
    return std::nullopt;
  }
};

inline double ParsePromValue(const std::string& v) {
  if (v == "+Inf") return 1e308 * 10;
  if (v == "-Inf") return -1e308 * 10;
  return std::strtod(v.c_str(), nullptr);
}

inline PromText ParsePrometheusText(const std::string& text) {
  PromText out;
  std::istringstream in(text);
  std::string line;
  auto family_of = [&](const std::string& name) -> std::string {
    if (out.types.count(name)) return name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
      const std::string s = suffix;
      if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) {
        std::string base = name.substr(0, name.size() - s.size());
        if (out.types.count(base) && out.types[base] == "histogram") return base;
      }
    }
    return {};
  };
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
      const size_t sp = line.find(' ', 7);
      if (sp == std::string::npos) {
        out.errors.push_back("bad comment line: " + line);
        continue;
      }
      const std::string name = line.substr(7, sp - 7), rest = line.substr(sp + 1);
      if (line[2] == 'H') {
        out.help[name] = rest;
      } else {
        if (!out.help.count(name)) out.errors.push_back("TYPE before HELP: " + name);
        if (rest != "counter" && rest != "gauge" && rest != "histogram") {
          out.errors.push_back("unexpected type " + rest + " of " + name);
        }
        if (rest == "counter" && name.size() < 6) out.errors.push_back("short counter " + name);
        if (rest == "counter" && name.compare(name.size() - 6, 6, "_total") != 0) {
          out.errors.push_back("counter without _total: " + name);
        }
        out.types[name] = rest;
      }
      continue;
    }
    if (line[0] == '#') continue;
    PromSample s;
    size_t end = line.find_first_of("{ ");
    s.name = line.substr(0, end);
    size_t value_at = end + 1;
    if (end != std::string::npos && line[end] == '{') {
      const size_t close = line.find("} ", end);
      if (close == std::string::npos) {
        out.errors.push_back("unclosed labels: " + line);
        continue;
      }
      s.labels = line.substr(end + 1, close - end - 1);
      value_at = close + 2;
    }
    if (end == std::string::npos || value_at >= line.size()) {
      out.errors.push_back("no value: " + line);
      continue;
    }
    s.value = ParsePromValue(line.substr(value_at));
    if (family_of(s.name).empty()) out.errors.push_back("sample without TYPE: " + s.name);
    out.samples.push_back(s);
  }
  // Histograms: buckets per series cumulative, +Inf equal to _count.
  for (const auto& [family, type] : out.types) {
    if (type != "histogram") continue;
    std::map<std::string, std::vector<double>> buckets;  // series (labels without le) -> counts
    std::map<std::string, bool> has_inf;
    for (const PromSample& s : out.samples) {
      if (s.name != family + "_bucket") continue;
      const size_t le = s.labels.find("le=\"");
      if (le == std::string::npos) {
        out.errors.push_back(family + ": bucket without le");
        continue;
      }
      std::string series = s.labels.substr(0, le);
      buckets[series].push_back(s.value);
      if (s.labels.find("le=\"+Inf\"") != std::string::npos) has_inf[series] = true;
    }
    for (const auto& [series, counts] : buckets) {
      for (size_t i = 1; i < counts.size(); ++i) {
        if (counts[i] < counts[i - 1]) out.errors.push_back(family + ": buckets decrease");
      }
      if (!has_inf[series]) out.errors.push_back(family + ": no +Inf bucket");
      std::string labels = series;
      if (!labels.empty() && labels.back() == ',') labels.pop_back();
      bool found = false;
      for (const PromSample& s : out.samples) {
        if (s.name == family + "_count" && s.labels == labels) {
          found = true;
          if (s.value != counts.back()) out.errors.push_back(family + ": _count != +Inf bucket");
        }
      }
      if (!found) out.errors.push_back(family + ": no _count for {" + labels + "}");
    }
  }
  return out;
}

}  // namespace eddy::testing

#endif  // EDDY_TESTS_TESTING_PROMETHEUS_TEXT_H_
