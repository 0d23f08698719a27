// Transport: the seam through which nodes open their outgoing ZeroMQ
// connections (worker -> server data, server/worker -> scheduler control,
// replica -> version service), so that tests can interpose on them.
// DirectTransport is a plain connect; ConnectVia picks it when none is given.
// Thread-safety: implementations must allow concurrent Connect calls.
#ifndef EDDY_COMMON_TRANSPORT_H_
#define EDDY_COMMON_TRANSPORT_H_

#include <string>
#include <string_view>
#include <zmq.hpp>

#include "common/status.h"

namespace eddy {

// The kinds of node at either end of a connection.
enum class NodeRole { kScheduler, kServer, kWorker, kReplica, kVersionService };
// What a connection carries.
enum class ConnectionPurpose { kData, kControl };

// Says which node connects to which peer and for what.
struct ConnectionLabel {
  NodeRole from_role = NodeRole::kWorker;
  // The connecting node's id when known, else its requested rank; -1: neither.
  int from_id = -1;
  NodeRole to_role = NodeRole::kServer;
  int to_id = -1;  // the peer's id; -1 for singletons (scheduler, version service)
  ConnectionPurpose purpose = ConnectionPurpose::kData;

  // E.g. "worker 0 -> server 1 (data)".
  std::string ToString() const;
  friend bool operator==(const ConnectionLabel&, const ConnectionLabel&) = default;
};

std::string_view NodeRoleName(NodeRole role);

class Transport {
 public:
  virtual ~Transport() = default;
  // Connects `socket` (a DEALER or REQ owned by the calling thread, options
  // already set) so that what it sends reaches `endpoint` and the peer's
  // answers come back to it; `who` describes the connection. Errors:
  // InvalidArgument for a bad endpoint or socket type, Unavailable when the
  // connection cannot be set up. Never throws.
  virtual Status Connect(zmq::socket_t& socket, const std::string& endpoint,
                         const ConnectionLabel& who) = 0;
};

// A plain zmq connect to the endpoint; the label is ignored. Stateless.
class DirectTransport final : public Transport {
 public:
  Status Connect(zmq::socket_t& socket, const std::string& endpoint,
                 const ConnectionLabel& who) override;
};

// Connects through `transport`, or directly when it is nullptr.
Status ConnectVia(Transport* transport, zmq::socket_t& socket, const std::string& endpoint,
                  const ConnectionLabel& who);

}  // namespace eddy

#endif  // EDDY_COMMON_TRANSPORT_H_
