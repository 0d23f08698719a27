#include "common/message.h"

#include <algorithm>
#include <memory>
#include <span>
#include <vector>

namespace eddy {
namespace {

constexpr size_t kCopyBelow = 256;  // small frames are cheaper to copy

void ReleaseOwner(void* /*data*/, void* hint) {
  delete static_cast<std::shared_ptr<const void>*>(hint);
}

zmq::message_t ToFrame(const Buffer& b) {
  if (b.size() < kCopyBelow || !b.owner()) return zmq::message_t(b.data(), b.size());
  auto* hint = new std::shared_ptr<const void>(b.owner());
  return zmq::message_t(const_cast<std::byte*>(b.data()), b.size(), &ReleaseOwner, hint);
}

Buffer FromFrame(zmq::message_t&& frame) {
  if (frame.size() == 0) return Buffer();
  auto holder = std::make_shared<zmq::message_t>(std::move(frame));
  const void* p = holder->data();
  size_t n = holder->size();
  return Buffer(std::shared_ptr<const void>(holder, p), p, n);
}

size_t DTypeSize(proto::DType d) { return d == proto::FLOAT32 ? 4 : 0; }

// Sends routing frames, then the three frames of `msg`.
template <typename Frames>
Status SendFrames(zmq::socket_t& socket, const Frames& routing, const Message& msg,
                  bool dont_wait) {
  std::string header = msg.header.SerializeAsString();
  zmq::send_flags more = zmq::send_flags::sndmore;
  zmq::send_flags last = zmq::send_flags::none;
  if (dont_wait) {
    more = more | zmq::send_flags::dontwait;
    last = last | zmq::send_flags::dontwait;
  }
  try {
    for (std::string_view frame : routing) {
      if (!socket.send(zmq::buffer(frame), more)) return UnavailableError("send would block");
    }
    if (!socket.send(zmq::message_t(header.data(), header.size()), more) ||
        !socket.send(ToFrame(msg.keys), more) || !socket.send(ToFrame(msg.values), last)) {
      return UnavailableError("send would block");
    }
  } catch (const zmq::error_t& e) {
    return UnavailableError(std::string("zmq send failed: ") + e.what());
  }
  return OkStatus();
}

// Receives every frame of one multipart message.
Status RecvFrames(zmq::socket_t& socket, std::vector<zmq::message_t>* frames) {
  try {
    do {
      zmq::message_t f;
      if (!socket.recv(f, zmq::recv_flags::none)) return UnavailableError("recv interrupted");
      frames->push_back(std::move(f));
    } while (frames->back().more());
  } catch (const zmq::error_t& e) {
    return UnavailableError(std::string("zmq recv failed: ") + e.what());
  }
  return OkStatus();
}

// Decodes frames[first..] as header | keys | values.
StatusOr<Message> DecodeFrames(std::vector<zmq::message_t>& frames, size_t first) {
  if (frames.size() != first + 3) {
    return InvalidArgumentError("malformed message: expected 3 frames, got " +
                                std::to_string(frames.size() - std::min(first, frames.size())));
  }
  Message msg;
  if (!msg.header.ParseFromArray(frames[first].data(), static_cast<int>(frames[first].size()))) {
    return InvalidArgumentError("malformed message: header does not parse");
  }
  if (msg.header.protocol_version() != kProtocolVersion) {
    return FailedPreconditionError(
        "peer speaks Eddy protocol version " + std::to_string(msg.header.protocol_version()) +
        ", this build speaks version " + std::to_string(kProtocolVersion) +
        "; run the same Eddy release on every node");
  }
  msg.keys = FromFrame(std::move(frames[first + 1]));
  msg.values = FromFrame(std::move(frames[first + 2]));
  return msg;
}

}  // namespace

proto::Header MakeHeader(proto::MsgType type, uint64_t request_id) {
  proto::Header h;
  h.set_protocol_version(kProtocolVersion);
  h.set_type(type);
  h.set_request_id(request_id);
  return h;
}

Status SendMessage(zmq::socket_t& socket, const Message& msg, const Envelope& envelope,
                   bool dont_wait) {
  return SendFrames(socket, envelope, msg, dont_wait);
}

Status SendMessage(zmq::socket_t& socket, const Message& msg, std::string_view routing_id,
                   bool dont_wait) {
  std::span<const std::string_view> routing(&routing_id, routing_id.empty() ? 0 : 1);
  return SendFrames(socket, routing, msg, dont_wait);
}

StatusOr<Message> RecvMessage(zmq::socket_t& socket, Envelope* envelope) {
  std::vector<zmq::message_t> frames;
  RETURN_IF_ERROR(RecvFrames(socket, &frames));
  // A ROUTER always prepends the peer's id: keep it even for a too short message.
  const size_t routing = frames.size() > 3 ? frames.size() - 3 : 1;
  envelope->clear();
  for (size_t i = 0; i < routing && i < frames.size(); ++i)
    envelope->push_back(frames[i].to_string());
  return DecodeFrames(frames, routing);
}

StatusOr<Message> RecvMessage(zmq::socket_t& socket, std::string* routing_id, int* source_fd) {
  std::vector<zmq::message_t> frames;
  RETURN_IF_ERROR(RecvFrames(socket, &frames));
  // The file descriptor of the TCP connection it came on (-1 when unknown).
  if (source_fd != nullptr) {
    // The ROUTER's own routing-id frame has no descriptor; the peer's frames do.
    *source_fd = -1;
    for (zmq::message_t& f : frames) {
      const int fd = zmq_msg_get(f.handle(), ZMQ_SRCFD);
      if (fd >= 0) {
        *source_fd = fd;
        break;
      }
    }
  }
  size_t first = 0;
  if (routing_id != nullptr) {
    routing_id->assign(static_cast<const char*>(frames[0].data()), frames[0].size());
    first = 1;
  }
  return DecodeFrames(frames, first);
}

Status ValidateFrames(const Message& msg) {
  const proto::Header& h = msg.header;
  if (msg.keys.size() != h.num_keys() * sizeof(uint64_t)) {
    return InvalidArgumentError("key frame has " + std::to_string(msg.keys.size()) +
                                " bytes, header says " + std::to_string(h.num_keys()) + " keys");
  }
  size_t expected_values = 0;
  switch (h.type()) {
    case proto::PUSH:
    case proto::PUSH_PULL:
      expected_values = h.num_keys() * h.value_dim();
      break;
    case proto::PUSH_DENSE:
      expected_values = h.value_count();
      break;
    case proto::REPLY:
      expected_values = h.value_count();
      break;
    default:
      expected_values = 0;
  }
  size_t elem = DTypeSize(h.dtype());
  if (expected_values > 0 && elem == 0) {
    return InvalidArgumentError("values present but dtype is unset or unsupported");
  }
  if (msg.values.size() != expected_values * elem) {
    return InvalidArgumentError("value frame has " + std::to_string(msg.values.size()) +
                                " bytes, expected " + std::to_string(expected_values * elem) +
                                " for " + std::string(MsgTypeName(h.type())));
  }
  return OkStatus();
}

std::string_view MsgTypeName(proto::MsgType type) {
  if (!proto::MsgType_IsValid(type)) return "INVALID";
  return proto::MsgType_Name(type);
}

void SetStatus(const Status& status, proto::Header* header) {
  header->set_status_code(static_cast<int32_t>(status.code()));
  header->set_status_message(status.message());
}

Status StatusFromHeader(const proto::Header& header) {
  if (header.status_code() == 0) return OkStatus();
  int code = header.status_code();
  if (code < 0 || code > static_cast<int>(StatusCode::kCancelled))
    code = static_cast<int>(StatusCode::kInternal);
  return Status(static_cast<StatusCode>(code), header.status_message());
}

}  // namespace eddy
