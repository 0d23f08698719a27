#include "common/rpc_client.h"

#include <optional>
#include <utility>

#include "common/event_loop.h"

namespace eddy {

RpcClient::RpcClient(zmq::context_t& context, RpcClientOptions options)
    : socket_(context, zmq::socket_type::dealer) {
  ConfigureSocket(socket_, options.linger_ms, options.max_message_bytes);
}

Status RpcClient::Connect(const std::string& endpoint, Transport* transport,
                          const ConnectionLabel& label) {
  RETURN_IF_ERROR(ConnectVia(transport, socket_, endpoint, label));
  peer_ = endpoint;
  return OkStatus();
}

StatusOr<Message> RpcClient::Call(Message request, std::chrono::milliseconds timeout,
                                  const RpcInterrupt& interrupt) {
  const uint64_t id = ++next_id_;
  const proto::MsgType type = request.header.type();
  request.header.set_request_id(id);
  RETURN_IF_ERROR(SendMessage(socket_, request));
  const auto deadline = SteadyClock::now() + timeout;
  std::optional<Message> result;
  EventLoop loop;
  // The waker is polled before the socket, so a wake-up that was already pending
  // when the call began is always seen, whether or not the reply is there too.
  if (interrupt.waker != nullptr) {
    loop.AddWaker(*interrupt.waker, [&] {
      if (!interrupt.ends_call || interrupt.ends_call()) {
        loop.Exit(CancelledError(std::string(MsgTypeName(type)) + " to " + peer_ + " interrupted"));
      }
    });
  }
  loop.AddSocket(
      socket_,
      [&] {
        StatusOr<Message> reply = RecvMessage(socket_);
        if (!reply.ok()) return loop.Exit(reply.status());
        if (reply->header.request_id() != id) {
          ++stale_replies_;  // the answer to a timed-out call
          return;
        }
        Status status = StatusFromHeader(reply->header);
        if (status.ok()) result = std::move(reply).value();
        loop.Exit(std::move(status));
      },
      EventLoop::kUnlimited);
  loop.AddTicker([&](EventLoop::TimePoint now) -> StatusOr<EventLoop::TimePoint> {
    if (now < deadline) return deadline;
    return DeadlineExceededError(std::string(MsgTypeName(type)) + " to " + peer_ +
                                 ": no answer in " + std::to_string(timeout.count()) + " ms");
  });
  RETURN_IF_ERROR(loop.Run());
  return std::move(result).value();
}

}  // namespace eddy
