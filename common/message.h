// Message: one wire message (protobuf header + raw key and value frames) and the
// functions that move it over a ZeroMQ socket without copying the arrays.
// Thread-safety: functions are reentrant; a zmq::socket_t must be used by one thread.
#ifndef EDDY_COMMON_MESSAGE_H_
#define EDDY_COMMON_MESSAGE_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>
#include <zmq.hpp>

#include "common/buffer.h"
#include "common/proto/eddy.pb.h"
#include "common/status.h"

namespace eddy {

// Bumped on any incompatible change of the wire format.
inline constexpr uint32_t kProtocolVersion = 1;

struct Message {
  proto::Header header;
  Buffer keys;    // raw uint64 keys; empty when the message has none
  Buffer values;  // raw values of header.dtype(); empty when none
};

// A new header with the protocol version and type set.
proto::Header MakeHeader(proto::MsgType type, uint64_t request_id = 0);

// The routing frames in front of a message's header, outermost first: on a
// ROUTER socket the peer's routing id, then whatever further hops (proxies, a
// REQ peer's empty delimiter) put there. Replying with the same envelope
// reaches the same peer.
using Envelope = std::vector<std::string>;

// Sends `msg` as envelope... | header | keys | values. Key and value frames
// are handed to ZeroMQ without copying; their Buffers stay alive until sent.
// Returns Unavailable if the socket would block or is closed.
Status SendMessage(zmq::socket_t& socket, const Message& msg, const Envelope& envelope,
                   bool dont_wait = false);
// As above with at most one routing frame (none when `routing_id` is empty).
Status SendMessage(zmq::socket_t& socket, const Message& msg, std::string_view routing_id = {},
                   bool dont_wait = false);

// Receives one multipart message (all frames are consumed even when it is
// malformed); every frame before the last three goes to *envelope. Errors:
// InvalidArgument for fewer than 3 message frames (or no routing frame) or an
// unparsable header, FailedPrecondition for another protocol version. On
// error *envelope still holds what routing frames came, so the caller can
// answer the peer.
StatusOr<Message> RecvMessage(zmq::socket_t& socket, Envelope* envelope);
// As above for a socket without envelopes (routing_id null: exactly three
// frames) or a ROUTER whose peers connect directly (exactly one routing frame,
// stored in *routing_id, also on error).
// source_fd: the file descriptor of the TCP connection the message came on
// (ZMQ_SRCFD; -1 when unknown), which a PeerMonitor reports when it closes.
StatusOr<Message> RecvMessage(zmq::socket_t& socket, std::string* routing_id = nullptr,
                              int* source_fd = nullptr);

// Checks that the frames agree with the header: key frame = num_keys * 8 bytes,
// value frame = num_keys * value_dim (or value_count) elements of dtype.
Status ValidateFrames(const Message& msg);

// Short human-readable name of a message type ("PUSH", ...).
std::string_view MsgTypeName(proto::MsgType type);

// Converts between eddy::Status and the status fields of a reply header.
void SetStatus(const Status& status, proto::Header* header);
Status StatusFromHeader(const proto::Header& header);

}  // namespace eddy

#endif  // EDDY_COMMON_MESSAGE_H_
