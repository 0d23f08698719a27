#include "model_store/snapshot_request.h"

#include "common/message.h"
#include "common/rpc_client.h"

namespace eddy::model_store {

StatusOr<int64_t> RequestSnapshot(const std::string& endpoint, std::chrono::milliseconds timeout) {
  zmq::context_t context;
  RpcClient rpc(context, {.linger_ms = 0, .max_message_bytes = 1 << 20});
  RETURN_IF_ERROR(rpc.Connect(endpoint));
  StatusOr<Message> reply = rpc.Call(Message{MakeHeader(proto::SNAPSHOT_NOW), {}, {}}, timeout);
  if (reply.status().code() == StatusCode::kDeadlineExceeded) {
    return DeadlineExceededError(reply.status().message() +
                                 ": is the job running, and is this its scheduler endpoint?");
  }
  if (!reply.ok()) return reply.status();
  return static_cast<int64_t>(reply->header.version());
}

}  // namespace eddy::model_store
