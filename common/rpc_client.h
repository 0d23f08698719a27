// RpcClient: request/reply over a DEALER socket it owns. Call() stamps a fresh
// request id, waits for the reply carrying it until a deadline (dropping stale
// replies of earlier timed-out calls) and turns the reply's status into a Status.
// Thread-safety: thread-compatible; one thread uses a client at a time.
#ifndef EDDY_COMMON_RPC_CLIENT_H_
#define EDDY_COMMON_RPC_CLIENT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <zmq.hpp>

#include "common/message.h"
#include "common/net.h"
#include "common/status.h"
#include "common/transport.h"

namespace eddy {

struct RpcClientOptions {
  int linger_ms = 0;
  int64_t max_message_bytes = 0;  // 0: no limit
};

// Ends a call early: when `waker` fires it is drained and, if `ends_call` is
// empty or returns true, the call fails with Cancelled (else it goes on).
struct RpcInterrupt {
  Waker* waker = nullptr;
  std::function<bool()> ends_call;
};

class RpcClient {
 public:
  // Borrows `context`, which must outlive the client.
  explicit RpcClient(zmq::context_t& context, RpcClientOptions options = {});
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  // Connects to `endpoint`, which names the peer in errors, through
  // `transport` (nullptr: directly; not owned, must outlive the client).
  // Errors: InvalidArgument for a bad endpoint.
  Status Connect(const std::string& endpoint, Transport* transport = nullptr,
                 const ConnectionLabel& label = {});

  // Sends `request` with the next request id and waits for the reply with
  // that id. Errors: the reply header's status; DeadlineExceeded naming the
  // message type and the peer when none came within `timeout`; Cancelled by
  // `interrupt`; Unavailable when the socket fails; InvalidArgument or
  // FailedPrecondition for a malformed reply.
  StatusOr<Message> Call(Message request, std::chrono::milliseconds timeout,
                         const RpcInterrupt& interrupt = {});

  // Replies dropped because they answered an earlier (timed-out) call.
  uint64_t stale_replies() const { return stale_replies_; }
  const std::string& peer() const { return peer_; }

 private:
  zmq::socket_t socket_;
  std::string peer_;
  uint64_t next_id_ = 0;
  uint64_t stale_replies_ = 0;
};

}  // namespace eddy

#endif  // EDDY_COMMON_RPC_CLIENT_H_
