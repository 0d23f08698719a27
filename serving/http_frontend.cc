#include "serving/http_frontend.h"

#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "worker/data/parser.h"

namespace eddy::serving {
namespace {

using nlohmann::json;

constexpr int kCriteoColumns = worker::kCriteoIntegerFeatures + worker::kCriteoCategoricalFeatures;

// Column of a Criteo field name (I1..I13 -> 0..12, C1..C26 -> 13..38), -1 if none.
int CriteoColumn(const std::string& name) {
  if (name.size() < 2 || (name[0] != 'I' && name[0] != 'C')) return -1;
  int n = 0;
  for (size_t i = 1; i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9' || i > 3) return -1;
    n = n * 10 + (name[i] - '0');
  }
  if (name[0] == 'I') return n >= 1 && n <= worker::kCriteoIntegerFeatures ? n - 1 : -1;
  return n >= 1 && n <= worker::kCriteoCategoricalFeatures ? worker::kCriteoIntegerFeatures + n - 1
                                                          : -1;
}

// One field's text in the row; an error message when it cannot be one.
std::string FieldText(const std::string& name, const json& v, std::string* error) {
  if (v.is_null()) return {};
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s.find_first_of("\t\n\r") != std::string::npos) {
      *error = "field " + name + " contains a tab or newline";
    }
    return s;
  }
  if (name[0] == 'I' && v.is_number()) {
    if (v.is_number_integer()) return v.dump();
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::abs(d) < 9e18) {
      return std::to_string(static_cast<int64_t>(d));
    }
    *error = "field " + name + " must be an integer, got " + v.dump();
    return {};
  }
  *error = "field " + name + " must be a " + (name[0] == 'I' ? "number or string" : "string") +
           " (hexadecimal for C fields), got " + v.dump();
  return {};
}

// One instance as a text row without the label; `error` set when it is not one.
std::string InstanceRow(const json& instance, const ServingModelSpec& spec, std::string* error) {
  if (instance.is_string()) return instance.get<std::string>();
  if (!instance.is_object()) {
    *error = "an instance must be an object or a string, got " + std::string(instance.type_name());
    return {};
  }
  if (auto it = instance.find("row"); it != instance.end()) {
    if (!it->is_string() || instance.size() != 1) {
      *error = "\"row\" must be the only key and a string (a text row in the model's format, "
               "without the label)";
      return {};
    }
    return it->get<std::string>();
  }
  if (spec.format != "criteo") {
    *error = "format " + spec.format +
             " takes instances as {\"row\": \"<text row without the label>\"} only";
    return {};
  }
  std::vector<std::string> columns(kCriteoColumns);
  for (const auto& [key, value] : instance.items()) {
    const int c = CriteoColumn(key);
    if (c < 0) {
      *error = "unknown field \"" + key + "\" (criteo fields are I1..I13 and C1..C26, or give "
               "{\"row\": ...})";
      return {};
    }
    columns[c] = FieldText(key, value, error);
    if (!error->empty()) return {};
  }
  std::string row;
  for (int c = 0; c < kCriteoColumns; ++c) {
    if (c > 0) row += '\t';
    row += columns[c];
  }
  return row;
}

// {"inputs": {"I1": [..], "C1": [..]}} -> instances (columns of equal length).
StatusOr<json> ColumnsToInstances(const json& inputs) {
  json instances = json::array();
  size_t n = 0;
  bool first = true;
  for (const auto& [key, column] : inputs.items()) {
    if (!column.is_array()) {
      return InvalidArgumentError("\"inputs\"." + key + " must be an array (one value per row)");
    }
    if (!first && column.size() != n) {
      return InvalidArgumentError("\"inputs\" columns differ in length: " + key + " has " +
                                  std::to_string(column.size()) + " values, others " +
                                  std::to_string(n));
    }
    n = column.size();
    first = false;
  }
  for (size_t i = 0; i < n; ++i) {
    json row = json::object();
    for (const auto& [key, column] : inputs.items()) row[key] = column[i];
    instances.push_back(std::move(row));
  }
  return instances;
}

void SetJson(httplib::Response& res, const json& body, int status = 200) {
  res.status = status;
  res.set_content(body.dump(), "application/json");
}

}  // namespace

StatusOr<std::vector<std::string>> RowsFromJson(const std::string& body,
                                                const ServingModelSpec& spec) {
  json request = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) {
    return InvalidArgumentError("the body is not valid JSON");
  }
  if (!request.is_object()) {
    return InvalidArgumentError("the body must be a JSON object with \"instances\" or \"inputs\"");
  }
  json instances;
  if (auto it = request.find("instances"); it != request.end()) {
    instances = *it;
  } else if (auto in = request.find("inputs"); in != request.end()) {
    if (in->is_object()) {
      ASSIGN_OR_RETURN(instances, ColumnsToInstances(*in));
    } else {
      instances = *in;
    }
  } else {
    return InvalidArgumentError("the body has neither \"instances\" nor \"inputs\"");
  }
  if (!instances.is_array() || instances.empty()) {
    return InvalidArgumentError("\"instances\" must be a non-empty array of rows");
  }
  std::vector<std::string> rows;
  rows.reserve(instances.size());
  for (size_t i = 0; i < instances.size(); ++i) {
    std::string error;
    rows.push_back(InstanceRow(instances[i], spec, &error));
    if (!error.empty()) return InvalidArgumentError("instance " + std::to_string(i) + ": " + error);
  }
  return rows;
}

HttpFrontend::HttpFrontend(const Replica* replica, ServingMetrics* metrics,
                           const MetricsRegistry* registry, HttpFrontendOptions options)
    : replica_(replica), metrics_(metrics), options_(std::move(options)), server_(options_.http) {
  httplib::Server& r = server_.routes();
  r.Post(R"(/v1/models/([^/:]+):predict)",
         [this](const httplib::Request& req, httplib::Response& res) { Predict(req, res); });
  r.Get(R"(/v1/models/([^/:]+))",
        [this](const httplib::Request& req, httplib::Response& res) { ModelStatus(req, res); });
  r.Get(R"(/v1/models/([^/:]+)/metadata)",
        [this](const httplib::Request& req, httplib::Response& res) { Metadata(req, res); });
  if (registry != nullptr) ServeMetrics(&server_, registry);
  r.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404 && res.body.empty()) {
      SetJsonError(&res, 404,
                   "no such endpoint: " + req.method + " " + req.path +
                       " (POST /v1/models/<name>:predict, GET /v1/models/<name>[/metadata], "
                       "GET /metrics)");
    }
  });
}

HttpFrontend::~HttpFrontend() { Stop(); }

StatusOr<int> HttpFrontend::Start() { return server_.Start(); }

void HttpFrontend::Stop() { server_.Stop(); }

std::unique_ptr<Predictor> HttpFrontend::TakePredictor() {
  {
    MutexLock lock(&mu_);
    if (!idle_.empty()) {
      std::unique_ptr<Predictor> p = std::move(idle_.back());
      idle_.pop_back();
      return p;
    }
  }
  return std::make_unique<Predictor>();
}

void HttpFrontend::ReturnPredictor(std::unique_ptr<Predictor> p) {
  MutexLock lock(&mu_);
  idle_.push_back(std::move(p));
}

bool HttpFrontend::CheckName(const std::string& name, httplib::Response& res) const {
  if (name == options_.model_name) return true;
  SetJsonError(&res, 404,
               "model \"" + name + "\" is not served here; this replica serves \"" +
                   options_.model_name + "\" (eddy_serve --model_name)");
  return false;
}

void HttpFrontend::Predict(const httplib::Request& req, httplib::Response& res) {
  const auto started = SteadyClock::now();
  if (!CheckName(req.matches[1], res)) {
    metrics_->OnBadRequest(PredictTransport::kHttp);
    return;
  }
  std::shared_ptr<const LoadedModel> model = replica_->serving();
  if (model == nullptr) {
    metrics_->OnBadRequest(PredictTransport::kHttp);
    SetJsonError(&res, 503, "no model version loaded yet; retry once GET /v1/models/" +
                                options_.model_name + " shows one AVAILABLE");
    return;
  }
  StatusOr<std::vector<std::string>> rows = RowsFromJson(req.body, model->spec());
  StatusOr<std::vector<float>> probs = std::vector<float>();
  if (rows.ok()) {
    std::vector<std::string_view> views(rows->begin(), rows->end());
    std::unique_ptr<Predictor> predictor = TakePredictor();
    probs = predictor->Predict(*model, views, /*no_label=*/true);
    ReturnPredictor(std::move(predictor));
  } else {
    probs = rows.status();
  }
  const double seconds = std::chrono::duration<double>(SteadyClock::now() - started).count();
  if (!probs.ok()) {
    metrics_->OnPredict(PredictTransport::kHttp, model->version(), seconds, 0, false);
    const Status& s = probs.status();
    SetJsonError(&res, s.code() == StatusCode::kInvalidArgument ? 400 : 500, s.message());
    return;
  }
  json reply = {{"predictions", *probs}, {"model_version", std::to_string(model->version())}};
  SetJson(res, reply);
  metrics_->OnPredict(PredictTransport::kHttp, model->version(), seconds, probs->size(), true);
}

void HttpFrontend::ModelStatus(const httplib::Request& req, httplib::Response& res) {
  if (!CheckName(req.matches[1], res)) return;
  const proto::ServeStatus s = replica_->status();
  std::vector<uint64_t> versions(s.cached_versions().begin(), s.cached_versions().end());
  std::sort(versions.rbegin(), versions.rend());
  json list = json::array();
  for (uint64_t v : versions) {
    list.push_back({{"version", std::to_string(v)},
                    {"state", "AVAILABLE"},
                    {"status", {{"error_code", "OK"}, {"error_message", ""}}}});
  }
  // "eddy" is not TF Serving's: which version answers, and why the last refusal.
  json reply = {{"model_version_status", list},
                {"eddy",
                 {{"serving_version", std::to_string(s.current_version())},
                  {"newest_version", std::to_string(s.newest_version())},
                  {"pinned_version", std::to_string(s.pinned_version())},
                  {"versions_refused", s.versions_refused()},
                  {"last_error", s.last_error()}}}};
  SetJson(res, reply);
}

void HttpFrontend::Metadata(const httplib::Request& req, httplib::Response& res) {
  if (!CheckName(req.matches[1], res)) return;
  std::shared_ptr<const LoadedModel> model = replica_->serving();
  if (model == nullptr) {
    SetJsonError(&res, 503, "no model version loaded yet");
    return;
  }
  const proto::Manifest& m = model->model().manifest;
  json attributes = json::object(), metrics = json::object();
  for (const auto& [k, v] : m.attributes()) attributes[k] = v;
  for (const auto& [k, v] : m.metrics()) metrics[k] = std::isfinite(v) ? json(v) : json(nullptr);
  json fields = json::array();
  if (model->spec().format == "criteo") {
    for (int i = 1; i <= worker::kCriteoIntegerFeatures; ++i) fields.push_back("I" + std::to_string(i));
    for (int i = 1; i <= worker::kCriteoCategoricalFeatures; ++i) {
      fields.push_back("C" + std::to_string(i));
    }
  }
  json reply = {{"model_spec", {{"name", options_.model_name}, {"version", std::to_string(m.version())}}},
                {"metadata",
                 {{"format", model->spec().format},
                  {"fields", fields},
                  {"created_unix_ms", m.created_unix_ms()},
                  {"attributes", attributes},
                  {"metrics", metrics}}}};
  SetJson(res, reply);
}

}  // namespace eddy::serving
