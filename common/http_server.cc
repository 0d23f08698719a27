#include "common/http_server.h"

#include <glog/logging.h>

namespace eddy {

HttpServer::HttpServer(HttpServerOptions options) : options_(std::move(options)) {
  const size_t threads = static_cast<size_t>(std::max(1, options_.threads));
  server_.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server_.set_payload_max_length(options_.max_body_bytes);
  server_.set_keep_alive_timeout(options_.keep_alive_seconds);
  server_.set_tcp_nodelay(true);
  server_.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                                   std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    SetJsonError(&res, 500, "internal error: " + what);
  });
}

HttpServer::~HttpServer() { Stop(); }

StatusOr<int> HttpServer::Start() {
  if (options_.port < 0 || options_.port > 65535) {
    return InvalidArgumentError("HTTP port " + std::to_string(options_.port) +
                                " is out of range (0..65535; 0 picks a free port)");
  }
  if (thread_.joinable()) return FailedPreconditionError("HTTP server already started");
  int port = options_.port;
  if (port == 0) {
    port = server_.bind_to_any_port(options_.bind_host);
  } else if (!server_.bind_to_port(options_.bind_host, port)) {
    port = -1;
  }
  if (port <= 0) {
    return UnavailableError("cannot bind HTTP on " + options_.bind_host + ":" +
                            std::to_string(options_.port) +
                            " (in use? choose another port, or 0 for a free one)");
  }
  port_ = port;
  thread_ = std::thread([this] {
    if (!server_.listen_after_bind()) LOG(WARNING) << "HTTP server on port " << port_ << " ended";
  });
  return port;
}

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  server_.stop();
  thread_.join();
}

void ServeMetrics(HttpServer* server, const MetricsRegistry* registry) {
  server->routes().Get("/metrics", [registry](const httplib::Request&, httplib::Response& res) {
    res.set_content(registry->Expose(), MetricsRegistry::kExpositionContentType);
  });
}

void SetJsonError(httplib::Response* res, int status, const std::string& message) {
  std::string body = "{\"error\": \"";
  for (unsigned char c : message) {
    if (c == '"' || c == '\\') {
      body += '\\';
      body += static_cast<char>(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\u%04x", c);
      body += buf;
    } else {
      body += static_cast<char>(c);
    }
  }
  body += "\"}";
  res->status = status;
  res->set_content(body, "application/json");
}

}  // namespace eddy
