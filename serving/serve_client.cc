#include "serving/serve_client.h"

#include <cstring>

#include "common/message.h"

namespace eddy::serving {

ServeClient::ServeClient(zmq::context_t& context, std::chrono::milliseconds timeout)
    : rpc_(context), timeout_(timeout) {}

Status ServeClient::Connect(const std::string& endpoint) { return rpc_.Connect(endpoint); }

StatusOr<Message> ServeClient::Call(proto::MsgType type, std::string payload) {
  Message request{MakeHeader(type), {}, {}};
  request.header.set_payload(std::move(payload));
  return rpc_.Call(std::move(request), timeout_);
}

StatusOr<Prediction> ServeClient::Predict(std::span<const std::string> rows, uint64_t version,
                                          bool no_label) {
  proto::PredictRequest body;
  for (const std::string& r : rows) body.add_rows(r);
  body.set_version(version);
  body.set_no_label(no_label);
  ASSIGN_OR_RETURN(Message m, Call(proto::PREDICT, body.SerializeAsString()));
  if (m.values.size() != rows.size() * sizeof(float)) {
    return DataLossError("PREDICT reply has " + std::to_string(m.values.size()) +
                         " bytes of probabilities for " + std::to_string(rows.size()) + " rows");
  }
  Prediction p;
  p.version = static_cast<uint64_t>(m.header.version());
  p.probabilities.resize(rows.size());
  if (!rows.empty()) std::memcpy(p.probabilities.data(), m.values.data(), m.values.size());
  return p;
}

StatusOr<proto::ServeStatus> ServeClient::Control(proto::ServeControlRequest::Action action,
                                                  uint64_t version) {
  proto::ServeControlRequest body;
  body.set_action(action);
  body.set_version(version);
  ASSIGN_OR_RETURN(Message reply, Call(proto::SERVE_CONTROL, body.SerializeAsString()));
  proto::ServeStatus status;
  if (!status.ParseFromString(reply.header.payload())) {
    return DataLossError("SERVE_CONTROL reply does not parse");
  }
  return status;
}

}  // namespace eddy::serving
