#include "worker/generator/generator_source.h"

#include <cstdlib>
#include <sstream>
#include <vector>

namespace eddy::worker {

StatusOr<GeneratedStreamSpec> ParseGeneratedStreamSpec(std::string_view spec) {
  GeneratedStreamSpec out;
  if (spec.rfind("gen", 0) != 0) return InvalidArgumentError("not a generated stream spec");
  spec.remove_prefix(3);
  if (spec.empty()) return out;
  if (spec.front() != ':') {
    return InvalidArgumentError(
        "expected gen or gen:key=value,... (rows, drift, seed, ctr, "
        "signal, vocab, preset)");
  }
  spec.remove_prefix(1);
  // A preset sets defaults first, wherever it stands; the other keys override it.
  std::vector<std::string> pairs;
  std::stringstream in{std::string(spec)};
  for (std::string kv; std::getline(in, kv, ',');) {
    if (kv.rfind("preset=", 0) == 0) {
      RETURN_IF_ERROR(ApplyPreset(kv.substr(7), &out.generator).WithContext("gen"));
    } else {
      pairs.push_back(kv);
    }
  }
  for (const std::string& kv : pairs) {
    const size_t eq = kv.find('=');
    const std::string key = kv.substr(0, eq);
    const std::string value = eq == std::string::npos ? "" : kv.substr(eq + 1);
    char* end = nullptr;
    const double number = std::strtod(value.c_str(), &end);
    if (eq == std::string::npos || value.empty() || *end != '\0' || number < 0) {
      return InvalidArgumentError("gen: '" + kv + "' is not key=value with a number >= 0");
    }
    if (key == "rows") {
      out.rows = static_cast<uint64_t>(number);
    } else if (key == "drift") {
      out.generator.drift_every = static_cast<uint64_t>(number);
    } else if (key == "seed") {
      out.generator.seed = static_cast<uint64_t>(number);
    } else if (key == "ctr") {
      out.generator.ctr = number;
    } else if (key == "signal") {
      out.generator.signal = number;
    } else if (key == "vocab") {
      out.generator.max_vocab = static_cast<uint32_t>(number);
    } else {
      return InvalidArgumentError("gen: unknown key '" + key +
                                  "' (rows, drift, seed, ctr, signal, vocab, preset)");
    }
  }
  RETURN_IF_ERROR(out.generator.Validate().WithContext("gen"));
  return out;
}

GeneratorSource::GeneratorSource(const GeneratedStreamSpec& spec)
    : rows_(spec.rows), generator_(spec.generator) {}

StatusOr<bool> GeneratorSource::Next(Line* line) {
  if (produced_ >= rows_) return false;
  float p = 0;
  generator_.NextRow(&text_, &p);
  ++produced_;
  line->text = text_;
  line->origin = "<generated>";
  line->line_number = produced_;
  line->truncated = false;
  return true;
}

}  // namespace eddy::worker
