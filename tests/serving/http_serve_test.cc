// The HTTP/JSON front end and the Prometheus endpoints, as users run them: the
// real eddy_train writes a model directory, a real eddy_serve follows it with
// --http_port, and an HTTP client (cpp-httplib) talks to it next to the
// ZeroMQ client. Also: the scheduler's /metrics during a local job.
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "serving/serve_client.h"
#include "tests/testing/prometheus_text.h"
#include "tests/worker/train_job_fixture.h"

namespace eddy {
namespace {

using nlohmann::json;

// "...http://127.0.0.1:PORT..." in `line` -> PORT.
int PortIn(const std::string& line) {
  const size_t at = line.find("http://127.0.0.1:");
  return at == std::string::npos ? -1 : std::atoi(line.c_str() + at + 17);
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> out;
  size_t start = 0;
  while (true) {
    size_t at = s.find(sep, start);
    out.push_back(s.substr(start, at - start));
    if (at == std::string::npos) return out;
    start = at + 1;
  }
}

// A Criteo row without its label as named fields (integers as JSON numbers,
// missing columns left out).
json NamedInstance(const std::string& row) {
  std::vector<std::string> cols = Split(row, '\t');
  json o = json::object();
  for (size_t c = 0; c < cols.size(); ++c) {
    if (cols[c].empty()) continue;
    if (c < 13) {
      o["I" + std::to_string(c + 1)] = std::stoll(cols[c]);
    } else {
      o["C" + std::to_string(c - 12)] = cols[c];
    }
  }
  return o;
}

class HttpServeTest : public TrainJobTest {};

TEST_F(HttpServeTest, HttpPredictMatchesZmqAndMetricsMove) {
  const std::string data = Generate("rows.tsv", 3000);
  const std::string models = (dir_ / "models").string();
  std::vector<std::string> flags = {"--local", "--data=" + data, "--model_dir=" + models};
  flags.insert(flags.end(), kSmallModel.begin(), kSmallModel.end());
  auto [code, out] = Train(flags);
  ASSERT_EQ(code, 0) << out;

  Subprocess serve({kBin + "/eddy_serve", "--model_dir=" + models, "--port=0", "--http_port=0",
                    "--http_threads=2"});
  auto zmq_line = serve.WaitForOutput("predictions on tcp://", 30s);
  ASSERT_TRUE(zmq_line.has_value()) << serve.output();
  const size_t at = zmq_line->find("tcp://");
  const std::string endpoint = zmq_line->substr(at, zmq_line->find(' ', at) - at);
  auto http_line = serve.WaitForOutput("HTTP on http://", 30s);
  ASSERT_TRUE(http_line.has_value()) << serve.output();
  ASSERT_TRUE(serve.WaitForOutput("loaded version", 30s).has_value()) << serve.output();
  httplib::Client http("127.0.0.1", PortIn(*http_line));

  // The same rows through both transports (labels stripped).
  std::ifstream in(data);
  std::vector<std::string> rows;
  for (std::string line; rows.size() < 20 && std::getline(in, line);) {
    rows.push_back(line.substr(line.find('\t') + 1));
  }
  zmq::context_t context;
  serving::ServeClient client(context, 10s);
  ASSERT_TRUE(client.Connect(endpoint).ok());
  auto zmq_pred = client.Predict(rows, 0, /*no_label=*/true);
  ASSERT_TRUE(zmq_pred.ok()) << zmq_pred.status();

  json raw = {{"instances", json::array()}}, named = raw;
  for (const std::string& r : rows) {
    raw["instances"].push_back({{"row", r}});
    named["instances"].push_back(NamedInstance(r));
  }
  for (const json* body : {&raw, &named}) {
    auto res = http.Post("/v1/models/eddy:predict", body->dump(), "application/json");
    ASSERT_TRUE(res) << httplib::to_string(res.error());
    ASSERT_EQ(res->status, 200) << res->body;
    json reply = json::parse(res->body);
    EXPECT_EQ(reply["model_version"], std::to_string(zmq_pred->version));
    ASSERT_EQ(reply["predictions"].size(), rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      EXPECT_EQ(static_cast<float>(reply["predictions"][i].get<double>()),
                zmq_pred->probabilities[i])
          << "row " << i;
    }
  }
  // Columnar "inputs" (TF Serving) with two rows.
  json columns = {{"inputs", {{"I1", {1, 2}}, {"C1", {"68fd1e64", nullptr}}}}};
  auto res = http.Post("/v1/models/eddy:predict", columns.dump(), "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_EQ(json::parse(res->body)["predictions"].size(), 2u);

  // Mistakes: 400/404 with an error that names the problem.
  struct Bad {
    std::string path, body, says;
    int status;
  };
  const std::vector<Bad> bad = {
      {"/v1/models/eddy:predict", "{not json", "not valid JSON", 400},
      {"/v1/models/eddy:predict", R"({"instances": [{"row": "1"}, {"I14": 3}]})",
       "instance 1: unknown field \\\"I14\\\"", 400},
      {"/v1/models/eddy:predict", R"({"instances": [{"C1": 5}]})", "field C1 must be a string",
       400},
      {"/v1/models/eddy:predict", R"({"instances": [{"row": "1\t2"}]})", "row 0", 400},
      {"/v1/models/eddy:predict", R"({"instances": []})", "non-empty array", 400},
      {"/v1/models/other:predict", R"({"instances": [{"row": ""}]})", "is not served here", 404},
  };
  for (const Bad& b : bad) {
    auto r = http.Post(b.path, b.body, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, b.status) << b.body << " -> " << r->body;
    EXPECT_NE(r->body.find(b.says), std::string::npos) << r->body;
    EXPECT_NO_THROW(json::parse(r->body)["error"].get<std::string>()) << r->body;
  }

  // Model status and metadata.
  auto status = http.Get("/v1/models/eddy");
  ASSERT_TRUE(status);
  ASSERT_EQ(status->status, 200);
  json st = json::parse(status->body);
  ASSERT_FALSE(st["model_version_status"].empty()) << status->body;
  EXPECT_EQ(st["model_version_status"][0]["version"], std::to_string(zmq_pred->version));
  EXPECT_EQ(st["model_version_status"][0]["state"], "AVAILABLE");
  EXPECT_EQ(st["model_version_status"][0]["status"]["error_code"], "OK");
  auto meta = http.Get("/v1/models/eddy/metadata");
  ASSERT_TRUE(meta);
  EXPECT_EQ(json::parse(meta->body)["metadata"]["attributes"]["model"], "deepfm") << meta->body;
  EXPECT_EQ(http.Get("/v1/models/other")->status, 404);

  // /metrics parses, and the counters saw what happened above.
  auto metrics = http.Get("/metrics");
  ASSERT_TRUE(metrics);
  ASSERT_EQ(metrics->status, 200);
  EXPECT_NE(metrics->get_header_value("Content-Type").find("version=0.0.4"), std::string::npos);
  testing::PromText m = testing::ParsePrometheusText(metrics->body);
  EXPECT_TRUE(m.errors.empty()) << ::testing::PrintToString(m.errors) << metrics->body;
  EXPECT_EQ(m.types["eddy_serve_predict_duration_seconds"], "histogram");
  EXPECT_EQ(m.types["eddy_serve_predict_requests_total"], "counter");
  EXPECT_EQ(m.Value("eddy_serve_predict_requests_total", {"transport=\"http\""}), 3 + bad.size());
  EXPECT_EQ(m.Value("eddy_serve_predict_errors_total", {"transport=\"http\""}), bad.size());
  EXPECT_EQ(m.Value("eddy_serve_predict_requests_total", {"transport=\"zmq\""}), 1);
  EXPECT_EQ(m.Value("eddy_serve_predicted_rows_total", {"transport=\"http\""}), 2 * rows.size() + 2);
  EXPECT_EQ(m.Value("eddy_serve_predicted_rows_total", {"transport=\"zmq\""}), rows.size());
  const std::string v = "version=\"" + std::to_string(zmq_pred->version) + "\"";
  EXPECT_EQ(m.Value("eddy_serve_predict_duration_seconds_count", {"transport=\"http\"", v}), 3);
  EXPECT_EQ(m.Value("eddy_serve_predict_duration_seconds_count", {"transport=\"zmq\"", v}), 1);
  EXPECT_EQ(m.Value("eddy_serve_version"), zmq_pred->version);
  EXPECT_GE(m.Value("eddy_serve_version_age_seconds").value_or(-1), 0);
  EXPECT_EQ(m.Value("eddy_serve_versions_loaded_total"), 1);

  serve.Kill(SIGTERM);
  auto exit_code = serve.WaitForExit(30s);
  ASSERT_TRUE(exit_code.has_value());
  EXPECT_EQ(*exit_code, 0) << serve.output();
}

// The scheduler's /metrics while a local job trains: many passes over a small
// file keep it running until the test has scraped it and stops it.
TEST_F(HttpServeTest, SchedulerMetricsShowRowsAndAuc) {
  const std::string data = Generate("rows.tsv", 2000);
  std::vector<std::string> argv = {kBin + "/eddy_train", "--local", "--data=" + data,
                                   "--passes=1000000", "--metrics_port=0"};
  argv.insert(argv.end(), kSmallModel.begin(), kSmallModel.end());
  Subprocess train(argv);
  auto line = train.WaitForOutput("metrics on http://", 60s);
  ASSERT_TRUE(line.has_value()) << train.output();
  httplib::Client http("127.0.0.1", PortIn(*line));
  testing::PromText m;
  // Polls until a pass of rows shows with its AUC; the job cannot end meanwhile.
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  while (std::chrono::steady_clock::now() < deadline) {
    auto res = http.Get("/metrics");
    ASSERT_TRUE(res) << train.output();
    m = testing::ParsePrometheusText(res->body);
    ASSERT_TRUE(m.errors.empty()) << ::testing::PrintToString(m.errors) << res->body;
    if (m.Value("eddy_train_rows_total").value_or(0) >= 1792 &&
        m.Value("eddy_train_auc").value_or(0) > 0) {
      break;
    }
  }
  EXPECT_GE(m.Value("eddy_train_rows_total").value_or(0), 1792) << train.output();
  const double auc = m.Value("eddy_train_auc").value_or(0);
  EXPECT_GT(auc, 0.0);
  EXPECT_LE(auc, 1.0);
  EXPECT_GT(m.Value("eddy_train_logloss").value_or(0), 0);
  EXPECT_EQ(m.types["eddy_train_rows_total"], "counter");
  // The server of the local job records its requests in the same registry.
  EXPECT_GT(m.Value("eddy_server_requests_total", {"type=\"PUSH_PULL\""}).value_or(0) +
                m.Value("eddy_server_requests_total", {"type=\"PULL\""}).value_or(0),
            0)
      << "no server requests counted";
  EXPECT_GT(m.Value("eddy_server_received_bytes_total", {"server=\"0\""}).value_or(0), 0);
  train.Kill(SIGKILL);
  EXPECT_TRUE(train.WaitForExit(60s).has_value()) << train.output();
}

}  // namespace
}  // namespace eddy
