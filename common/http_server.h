// HttpServer: a small HTTP/1.1 server (cpp-httplib, Debian's libcpp-httplib-dev)
// on a background thread pool, for the JSON front end of eddy_serve and the
// Prometheus /metrics endpoints of every process (docs/http.md).
//
//   HttpServer http({.bind_host = "127.0.0.1", .port = 0});
//   ServeMetrics(&http, &registry);          // GET /metrics
//   http.routes().Get("/x", handler);        // more routes, before Start()
//   StatusOr<int> port = http.Start();       // the bound port (0: ephemeral)
//
// Ownership: owns the httplib server and its threads; ServeMetrics borrows the
// registry, which must outlive the server (or Stop()).
// Thread-safety: routes() and Start() from one thread before serving; Stop()
// from any thread (idempotent; the destructor calls it). Handlers run on the
// pool's threads, up to `threads` at once (a keep-alive connection holds its
// thread while it is open).
#ifndef EDDY_COMMON_HTTP_SERVER_H_
#define EDDY_COMMON_HTTP_SERVER_H_

#include <httplib.h>

#include <memory>
#include <string>
#include <thread>

#include "common/metrics.h"
#include "common/status.h"

namespace eddy {

struct HttpServerOptions {
  std::string bind_host = "127.0.0.1";
  int port = 0;  // 0: an ephemeral port
  int threads = 4;
  size_t max_body_bytes = size_t{64} << 20;
  int keep_alive_seconds = 5;
};

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Where handlers are added (before Start()).
  httplib::Server& routes() { return server_; }
  // Binds and starts serving on a background thread. Returns the bound port.
  // Errors: InvalidArgument (options), Unavailable (bind failed: say which
  // address, and that another --*_port or 0 helps).
  StatusOr<int> Start();
  void Stop();
  int port() const { return port_; }

 private:
  const HttpServerOptions options_;
  httplib::Server server_;
  std::thread thread_;
  int port_ = -1;
};

// GET /metrics: `registry`'s text exposition (format 0.0.4).
void ServeMetrics(HttpServer* server, const MetricsRegistry* registry);

// Writes a JSON error body {"error": message} with `status` (escapes `message`).
void SetJsonError(httplib::Response* res, int status, const std::string& message);

}  // namespace eddy

#endif  // EDDY_COMMON_HTTP_SERVER_H_
