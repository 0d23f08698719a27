#include "model_store/snapshot_request.h"

#include "common/message.h"
#include "common/net.h"

namespace eddy::model_store {

StatusOr<int64_t> RequestSnapshot(const std::string& endpoint, std::chrono::milliseconds timeout) {
  zmq::context_t context;
  zmq::socket_t socket(context, zmq::socket_type::dealer);
  ConfigureSocket(socket, /*linger_ms=*/0, /*max_message_bytes=*/1 << 20);
  try {
    socket.connect(endpoint);
  } catch (const zmq::error_t& e) {
    return InvalidArgumentError(endpoint + ": " + e.what());
  }
  Message request{MakeHeader(proto::SNAPSHOT_NOW, 1), {}, {}};
  RETURN_IF_ERROR(SendMessage(socket, request));
  zmq::pollitem_t item{socket.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) {
    return DeadlineExceededError("no answer from " + endpoint + " within " +
                                 std::to_string(timeout.count()) +
                                 " ms: is the job running, and is this its scheduler endpoint?");
  }
  ASSIGN_OR_RETURN(Message reply, RecvMessage(socket));
  if (reply.header.status_code() != 0) {
    return FailedPreconditionError(reply.header.status_message());
  }
  return static_cast<int64_t>(reply.header.version());
}

}  // namespace eddy::model_store
