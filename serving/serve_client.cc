#include "serving/serve_client.h"

#include <cstring>

#include "common/message.h"
#include "common/net.h"

namespace eddy::serving {

ServeClient::ServeClient(zmq::context_t& context, std::chrono::milliseconds timeout)
    : socket_(context, zmq::socket_type::dealer), timeout_(timeout) {
  ConfigureSocket(socket_, 0, 0);
}

Status ServeClient::Connect(const std::string& endpoint) { return eddy::Connect(socket_, endpoint); }

StatusOr<Message> ServeClient::Call(proto::MsgType type, std::string payload) {
  const uint64_t id = ++next_id_;
  Message request{MakeHeader(type, id), {}, {}};
  request.header.set_payload(std::move(payload));
  RETURN_IF_ERROR(SendMessage(socket_, request));
  const auto deadline = SteadyClock::now() + timeout_;
  while (true) {
    zmq::pollitem_t item{socket_.handle(), 0, ZMQ_POLLIN, 0};
    try {
      zmq::poll(&item, 1, std::chrono::milliseconds(PollTimeoutMs(deadline, 1000)));
    } catch (const zmq::error_t& e) {
      return UnavailableError(std::string("poll failed: ") + e.what());
    }
    if (item.revents & ZMQ_POLLIN) {
      ASSIGN_OR_RETURN(Message reply, RecvMessage(socket_));
      if (reply.header.request_id() != id) continue;  // the answer to a timed-out call
      RETURN_IF_ERROR(StatusFromHeader(reply.header));
      return reply;
    }
    if (SteadyClock::now() >= deadline) {
      return DeadlineExceededError(std::string(MsgTypeName(type)) + ": no answer in " +
                                   std::to_string(timeout_.count()) + " ms");
    }
  }
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
