// HttpFrontend: eddy_serve's HTTP/JSON API in TensorFlow Serving's REST
// convention (docs/http.md), next to the ZeroMQ PREDICT of the same replica:
//   POST /v1/models/<name>:predict   {"instances": [...]} -> {"predictions": [...]}
//   GET  /v1/models/<name>           version status
//   GET  /v1/models/<name>/metadata  the served version's model and manifest
//   GET  /metrics                    the registry (Prometheus text format)
// Predictions come from the replica's served model (Replica::serving()) through
// the same Predictor code as PREDICT; each request checks a Predictor out of a
// small pool (one per concurrently running handler), as Predictor is not
// thread-safe.
// Ownership: borrows the replica, the metrics and the registry, which must
// outlive it (or Stop()); owns the HTTP server and the Predictor pool.
// Thread-safety: Start() once from one thread; Stop() from any; handlers run
// on the HTTP server's threads.
#ifndef EDDY_SERVING_HTTP_FRONTEND_H_
#define EDDY_SERVING_HTTP_FRONTEND_H_

#include <memory>
#include <string>
#include <vector>

#include "common/http_server.h"
#include "common/metrics.h"
#include "common/mutex.h"
#include "serving/loaded_model.h"
#include "serving/replica.h"
#include "serving/serving_metrics.h"

namespace eddy::serving {

struct HttpFrontendOptions {
  HttpServerOptions http;
  std::string model_name = "eddy";  // the <name> in /v1/models/<name>
};

class HttpFrontend {
 public:
  HttpFrontend(const Replica* replica, ServingMetrics* metrics, const MetricsRegistry* registry,
               HttpFrontendOptions options);
  ~HttpFrontend();
  HttpFrontend(const HttpFrontend&) = delete;
  HttpFrontend& operator=(const HttpFrontend&) = delete;

  // Binds and serves in the background; returns the bound port.
  StatusOr<int> Start();
  void Stop();

 private:
  std::unique_ptr<Predictor> TakePredictor() EXCLUDES(mu_);
  void ReturnPredictor(std::unique_ptr<Predictor> p) EXCLUDES(mu_);
  void Predict(const httplib::Request& req, httplib::Response& res);
  void ModelStatus(const httplib::Request& req, httplib::Response& res);
  void Metadata(const httplib::Request& req, httplib::Response& res);
  // False (and a 404 written) when `name` is not the served model's name.
  bool CheckName(const std::string& name, httplib::Response& res) const;

  const Replica* const replica_;
  ServingMetrics* const metrics_;
  const HttpFrontendOptions options_;
  HttpServer server_;
  Mutex mu_;
  std::vector<std::unique_ptr<Predictor>> idle_ GUARDED_BY(mu_);
};

// Turns the instances of a predict request body into text rows of `spec`'s
// format without the label column (exposed for tests). Accepts
// {"instances": [...]} and the columnar {"inputs": {...}} / {"inputs": [...]};
// an instance is {"row": "<text row>"}, a bare string (the same), or, for
// criteo, an object of named fields I1..I13 (numbers or strings) and C1..C26
// (strings), missing or null = empty. Errors: InvalidArgument saying what is
// wrong and at which instance.
StatusOr<std::vector<std::string>> RowsFromJson(const std::string& body,
                                                const ServingModelSpec& spec);

}  // namespace eddy::serving

#endif  // EDDY_SERVING_HTTP_FRONTEND_H_
