#include "common/transport.h"

#include "common/net.h"

namespace eddy {

std::string_view NodeRoleName(NodeRole role) {
  switch (role) {
    case NodeRole::kScheduler:
      return "scheduler";
    case NodeRole::kServer:
      return "server";
    case NodeRole::kWorker:
      return "worker";
    case NodeRole::kReplica:
      return "replica";
    case NodeRole::kVersionService:
      return "version service";
  }
  return "node";
}

std::string ConnectionLabel::ToString() const {
  std::string s(NodeRoleName(from_role));
  if (from_id >= 0) s += " " + std::to_string(from_id);
  s += " -> ";
  s += NodeRoleName(to_role);
  if (to_id >= 0) s += " " + std::to_string(to_id);
  s += purpose == ConnectionPurpose::kData ? " (data)" : " (control)";
  return s;
}

Status DirectTransport::Connect(zmq::socket_t& socket, const std::string& endpoint,
                                const ConnectionLabel& /*who*/) {
  return eddy::Connect(socket, endpoint);
}

Status ConnectVia(Transport* transport, zmq::socket_t& socket, const std::string& endpoint,
                  const ConnectionLabel& who) {
  if (transport == nullptr) return eddy::Connect(socket, endpoint);
  return transport->Connect(socket, endpoint, who);
}

}  // namespace eddy
