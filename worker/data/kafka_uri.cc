#include "worker/data/internal/kafka_handle.h"
#include "worker/data/kafka.h"

namespace eddy::worker {

using namespace kafka_detail;  // NOLINT: this file's own internals

// ---------------------------------------------------------------------------
// KafkaUri.

bool IsKafkaUri(std::string_view data) { return data.substr(0, kScheme.size()) == kScheme; }

std::string KafkaUri::ToString() const {
  std::string s = std::string(kScheme) + brokers + "/" + topic + "?group=" + group + "&start=";
  switch (start) {
    case Start::kEarliest:
      s += "earliest";
      break;
    case Start::kLatest:
      s += "latest";
      break;
    case Start::kTimestamp:
      s += std::to_string(start_timestamp_ms);
      break;
  }
  s += bounded ? "&end=latest" : "&end=never";
  s += several_rows_per_message ? "&rows=lines" : "&rows=one";
  for (const auto& [k, v] : config) s += "&rdkafka." + k + "=" + v;
  return s;
}

StatusOr<KafkaUri> ParseKafkaUri(std::string_view uri) {
  constexpr std::string_view kForm =
      "kafka://host:port[,host:port...]/topic[?group=G&start=earliest|latest|<unix ms>"
      "&end=never|latest&rows=one|lines&rdkafka.<property>=<value>...]";
  if (!IsKafkaUri(uri)) {
    return InvalidArgumentError("not a Kafka URI: '" + std::string(uri) + "'; expected " +
                                std::string(kForm));
  }
  std::string_view rest = uri.substr(kScheme.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) {
    return InvalidArgumentError("Kafka URI '" + std::string(uri) + "' names no topic; expected " +
                                std::string(kForm));
  }
  KafkaUri out;
  out.brokers = std::string(rest.substr(0, slash));
  RETURN_IF_ERROR(ValidateBrokers(out.brokers).WithContext("Kafka URI '" + std::string(uri) + "'"));
  rest = rest.substr(slash + 1);
  const size_t question = rest.find('?');
  out.topic = std::string(rest.substr(0, question));
  if (!ValidTopic(out.topic)) {
    return InvalidArgumentError(
        "Kafka URI '" + std::string(uri) + "': bad topic name '" + out.topic +
        "'; expected 1..249 characters of [a-zA-Z0-9._-] (not '.' or '..')");
  }
  if (question == std::string_view::npos) return out;
  std::string_view query = rest.substr(question + 1);
  std::set<std::string, std::less<>> seen;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view param = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (param.empty()) continue;
    const size_t eq = param.find('=');
    const auto bad = [&](const std::string& expected) {
      return InvalidArgumentError("Kafka URI '" + std::string(uri) + "': bad parameter '" +
                                  std::string(param) + "'; expected " + expected);
    };
    if (eq == std::string_view::npos) return bad("name=value");
    const std::string_view key = param.substr(0, eq);
    const std::string_view value = param.substr(eq + 1);
    if (!seen.insert(std::string(key)).second) {
      return InvalidArgumentError("Kafka URI '" + std::string(uri) + "': parameter '" +
                                  std::string(key) + "' given twice");
    }
    if (key == "group") {
      if (value.empty()) return bad("group=<consumer group name>");
      out.group = std::string(value);
    } else if (key == "start") {
      if (value == "earliest") {
        out.start = KafkaUri::Start::kEarliest;
      } else if (value == "latest") {
        out.start = KafkaUri::Start::kLatest;
      } else if (std::optional<int64_t> ms = ParseInt(value)) {
        out.start = KafkaUri::Start::kTimestamp;
        out.start_timestamp_ms = *ms;
      } else {
        return bad("start=earliest, start=latest or start=<unix time in ms>");
      }
    } else if (key == "end") {
      if (value == "never") {
        out.bounded = false;
      } else if (value == "latest") {
        out.bounded = true;
      } else {
        return bad("end=never or end=latest");
      }
    } else if (key == "rows") {
      if (value == "one") {
        out.several_rows_per_message = false;
      } else if (value == "lines") {
        out.several_rows_per_message = true;
      } else {
        return bad("rows=one (a message is a row) or rows=lines (rows separated by '\\n')");
      }
    } else if (key.substr(0, 8) == "rdkafka." && key.size() > 8) {
      out.config.emplace_back(std::string(key.substr(8)), std::string(value));
    } else {
      return bad("one of group=, start=, end=, rows=, rdkafka.<property>=");
    }
  }
  return out;
}

}  // namespace eddy::worker
