// ServeClient: a small synchronous client of a serving replica (PREDICT,
// SERVE_CONTROL), for tests, benchmarks and tools.
// Thread-safety: one ServeClient per thread (it owns a ZeroMQ socket).
#ifndef EDDY_SERVING_SERVE_CLIENT_H_
#define EDDY_SERVING_SERVE_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>
#include <zmq.hpp>

#include "common/message.h"
#include "common/proto/serving.pb.h"
#include "common/rpc_client.h"
#include "common/status.h"

namespace eddy::serving {

struct Prediction {
  uint64_t version = 0;  // the version that answered
  std::vector<float> probabilities;
};

// Owns a DEALER socket connected to the replica; borrows the context.
class ServeClient {
 public:
  ServeClient(zmq::context_t& context, std::chrono::milliseconds timeout);
  ServeClient(const ServeClient&) = delete;
  ServeClient& operator=(const ServeClient&) = delete;

  // Errors: InvalidArgument for a bad endpoint.
  Status Connect(const std::string& endpoint);

  // Rows in the model's training text format (label included unless
  // `no_label`). `version` 0: whatever is served. Errors: the replica's error
  // (InvalidArgument for a malformed row, Unavailable before the first
  // version, NotFound for an uncached version), DeadlineExceeded.
  StatusOr<Prediction> Predict(std::span<const std::string> rows, uint64_t version = 0,
                               bool no_label = false);
  // PIN / UNPIN / ROLLBACK / STATUS; returns the replica's state after it.
  StatusOr<proto::ServeStatus> Control(proto::ServeControlRequest::Action action,
                                       uint64_t version = 0);

 private:
  StatusOr<Message> Call(proto::MsgType type, std::string payload);

  RpcClient rpc_;
  const std::chrono::milliseconds timeout_;
};

}  // namespace eddy::serving

#endif  // EDDY_SERVING_SERVE_CLIENT_H_
