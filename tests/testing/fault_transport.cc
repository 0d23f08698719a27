#include "tests/testing/fault_transport.h"

#include <glog/logging.h>

#include <algorithm>
#include <deque>
#include <utility>

namespace eddy::testing {
namespace {

constexpr int kMaxMessagesPerPump = 64;  // then the other sockets get a turn

int Index(Direction d) { return d == Direction::kOutbound ? 0 : 1; }

// The header of a message: its first frame, or the second after a REQ's
// empty delimiter.
std::optional<proto::Header> DecodeHeader(const std::vector<zmq::message_t>& frames) {
  size_t i = 0;
  if (frames.size() > 1 && frames[0].size() == 0) i = 1;
  if (i >= frames.size()) return std::nullopt;
  proto::Header header;
  if (!header.ParseFromArray(frames[i].data(), static_cast<int>(frames[i].size())))
    return std::nullopt;
  return header;
}

}  // namespace

bool LabelMatch::Matches(int connection_id, const ConnectionLabel& label) const {
  return (!connection || *connection == connection_id) &&
         (!from_role || *from_role == label.from_role) && (!from_id || *from_id == label.from_id) &&
         (!to_role || *to_role == label.to_role) && (!to_id || *to_id == label.to_id) &&
         (!purpose || *purpose == label.purpose);
}

LabelMatch LabelMatch::Of(const ConnectionLabel& label) {
  LabelMatch m;
  m.from_role = label.from_role;
  m.from_id = label.from_id;
  m.to_role = label.to_role;
  m.to_id = label.to_id;
  m.purpose = label.purpose;
  return m;
}

DropRule DropType(proto::MsgType type, std::optional<Direction> direction) {
  DropRule rule;
  rule.predicate = [type](const proto::Header& h) { return h.type() == type; };
  rule.direction = direction;
  return rule;
}

DirectionCounters Total(const std::vector<ConnectionStats>& connections, const LabelMatch& match,
                        Direction direction) {
  DirectionCounters total;
  for (const ConnectionStats& c : connections) {
    if (!match.Matches(c.id, c.label)) continue;
    const DirectionCounters& d = c.in(direction);
    total.forwarded += d.forwarded;
    total.dropped += d.dropped;
    total.forwarded_bytes += d.forwarded_bytes;
    for (const auto& [type, n] : d.forwarded_by_type) total.forwarded_by_type[type] += n;
  }
  return total;
}

struct FaultTransport::Held {
  SteadyClock::time_point due;
  std::vector<zmq::message_t> frames;
};

struct FaultTransport::Relay {
  explicit Relay(zmq::context_t& context)
      : front(context, zmq::socket_type::dealer), back(context, zmq::socket_type::dealer) {}
  zmq::socket_t& source(Direction d) { return d == Direction::kOutbound ? front : back; }
  zmq::socket_t& sink(Direction d) { return d == Direction::kOutbound ? back : front; }

  int id = -1;
  zmq::socket_t front;       // bound on loopback; the node's socket connects to it
  zmq::socket_t back;        // connected to the real endpoint
  std::deque<Held> held[2];  // delayed messages by direction, in arrival order
};

FaultTransport::FaultTransport(uint64_t seed) : rng_(seed) {
  relay_thread_ = std::jthread([this](std::stop_token stop) { RelayLoop(std::move(stop)); });
}

FaultTransport::~FaultTransport() {
  relay_thread_.request_stop();
  waker_.Notify();
  relay_thread_.join();
}

Status FaultTransport::Connect(zmq::socket_t& socket, const std::string& endpoint,
                               const ConnectionLabel& who) {
  auto relay = std::make_unique<Relay>(context_);
  try {
    const int type = socket.get(zmq::sockopt::type);
    if (type != ZMQ_DEALER && type != ZMQ_REQ) {
      return InvalidArgumentError("FaultTransport relays DEALER and REQ sockets only (" +
                                  who.ToString() + ")");
    }
    for (zmq::socket_t* s : {&relay->front, &relay->back}) {
      ConfigureSocket(*s, /*linger_ms=*/0, /*max_message_bytes=*/0);
    }
    ASSIGN_OR_RETURN(std::string front_endpoint, BindTcp(relay->front, "127.0.0.1", 0));
    const std::string routing_id = socket.get(zmq::sockopt::routing_id);
    if (!routing_id.empty()) relay->back.set(zmq::sockopt::routing_id, routing_id);
    RETURN_IF_ERROR(eddy::Connect(relay->back, endpoint));
    RETURN_IF_ERROR(eddy::Connect(socket, front_endpoint));
  } catch (const zmq::error_t& e) {
    return UnavailableError("cannot set up a relay for " + who.ToString() + ": " + e.what());
  }
  {
    MutexLock lock(&mu_);
    Conn conn;
    conn.stats.id = static_cast<int>(conns_.size());
    conn.stats.label = who;
    conn.stats.endpoint = endpoint;
    for (const auto& [match, change] : standing_) {
      if (match.Matches(conn.stats.id, who)) change(conn.rules);
    }
    relay->id = conn.stats.id;
    conns_.push_back(std::move(conn));
    adopting_.push_back(std::move(relay));
  }
  changed_.NotifyAll();
  waker_.Notify();
  return OkStatus();
}

void FaultTransport::Change(const LabelMatch& match, std::function<void(Rules&)> change) {
  {
    MutexLock lock(&mu_);
    for (Conn& c : conns_) {
      if (match.Matches(c.stats.id, c.stats.label)) change(c.rules);
    }
    standing_.emplace_back(match, std::move(change));
  }
  changed_.NotifyAll();
}

void FaultTransport::Cut(const LabelMatch& match) {
  Change(match, [](Rules& r) { r.cut = true; });
}

void FaultTransport::Heal(const LabelMatch& match) {
  Change(match, [](Rules& r) { r.cut = false; });
}

void FaultTransport::Drop(const LabelMatch& match, DropRule rule) {
  auto shared = std::make_shared<const DropRule>(std::move(rule));
  Change(match, [shared](Rules& r) { r.drop = shared; });
}

void FaultTransport::Delay(const LabelMatch& match, std::chrono::milliseconds delay,
                           std::optional<Direction> direction) {
  Change(match, [delay, direction](Rules& r) {
    for (Direction d : {Direction::kOutbound, Direction::kInbound}) {
      if (!direction || *direction == d) r.delay[Index(d)] = delay;
    }
  });
}

void FaultTransport::Clear(const LabelMatch& match) {
  Change(match, [](Rules& r) { r = Rules(); });
}

std::vector<ConnectionStats> FaultTransport::SnapshotLocked() const {
  std::vector<ConnectionStats> out;
  out.reserve(conns_.size());
  for (const Conn& c : conns_) {
    out.push_back(c.stats);
    out.back().cut = c.rules.cut;
  }
  return out;
}

std::vector<ConnectionStats> FaultTransport::Connections() const {
  MutexLock lock(&mu_);
  return SnapshotLocked();
}

bool FaultTransport::WaitFor(const std::function<bool(const std::vector<ConnectionStats>&)>& pred,
                             std::chrono::milliseconds timeout) const {
  const auto deadline = SteadyClock::now() + timeout;
  MutexLock lock(&mu_);
  while (!pred(SnapshotLocked())) {
    if (!changed_.WaitUntil(&mu_, deadline)) return pred(SnapshotLocked());
  }
  return true;
}

bool FaultTransport::WaitForCount(const LabelMatch& match, Direction direction,
                                  uint64_t DirectionCounters::*counter, uint64_t n,
                                  std::chrono::milliseconds timeout) const {
  return WaitFor(
      [&](const std::vector<ConnectionStats>& c) {
        return Total(c, match, direction).*counter >= n;
      },
      timeout);
}

bool FaultTransport::WaitForForwarded(const LabelMatch& match, Direction direction, uint64_t n,
                                      std::chrono::milliseconds timeout) const {
  return WaitForCount(match, direction, &DirectionCounters::forwarded, n, timeout);
}

bool FaultTransport::WaitForDropped(const LabelMatch& match, Direction direction, uint64_t n,
                                    std::chrono::milliseconds timeout) const {
  return WaitForCount(match, direction, &DirectionCounters::dropped, n, timeout);
}

FaultTransport::Verdict FaultTransport::Judge(int id, Direction direction,
                                              const std::vector<zmq::message_t>& frames) {
  Verdict verdict;
  std::shared_ptr<const DropRule> rule;
  {
    MutexLock lock(&mu_);
    const Rules& rules = conns_[id].rules;
    if (rules.cut) {
      verdict.drop = true;
      return verdict;
    }
    rule = rules.drop;
    verdict.delay = rules.delay[Index(direction)];
  }
  if (rule == nullptr || rule->probability <= 0) return verdict;
  if (rule->direction && *rule->direction != direction) return verdict;
  if (rule->predicate) {
    std::optional<proto::Header> header = DecodeHeader(frames);
    if (!header || !rule->predicate(*header)) return verdict;
  }
  if (rule->probability >= 1) {
    verdict.drop = true;
  } else {
    MutexLock lock(&mu_);
    verdict.drop = std::uniform_real_distribution<double>(0, 1)(rng_) < rule->probability;
  }
  return verdict;
}

void FaultTransport::Pump(Relay& relay, Direction direction) {
  zmq::socket_t& source = relay.source(direction);
  for (int n = 0; n < kMaxMessagesPerPump; ++n) {
    std::vector<zmq::message_t> frames(1);
    if (!source.recv(frames[0], zmq::recv_flags::dontwait)) return;
    while (frames.back().more()) {
      frames.emplace_back();
      (void)source.recv(frames.back(), zmq::recv_flags::none);  // the rest is already here
    }
    const Verdict verdict = Judge(relay.id, direction, frames);
    std::deque<Held>& held = relay.held[Index(direction)];
    if (verdict.drop) {
      Count(relay.id, direction, nullptr);
    } else if (verdict.delay.count() > 0 || !held.empty()) {
      held.push_back(Held{SteadyClock::now() + verdict.delay, std::move(frames)});
    } else {
      Deliver(relay, direction, frames);
    }
  }
}

void FaultTransport::Deliver(Relay& relay, Direction direction,
                             std::vector<zmq::message_t>& frames) {
  bool cut;
  {
    MutexLock lock(&mu_);
    cut = conns_[relay.id].rules.cut;
  }
  if (cut) {
    Count(relay.id, direction, nullptr);
    return;
  }
  Delivered what;
  for (const zmq::message_t& f : frames) what.bytes += f.size();
  if (std::optional<proto::Header> header = DecodeHeader(frames)) what.type = header->type();
  zmq::socket_t& sink = relay.sink(direction);
  bool sent = true;
  for (size_t i = 0; i < frames.size() && sent; ++i) {
    const zmq::send_flags flags = i + 1 < frames.size()
                                      ? zmq::send_flags::sndmore | zmq::send_flags::dontwait
                                      : zmq::send_flags::dontwait;
    // Fails (EAGAIN) only when the receiving side has no peer: it has gone.
    sent = sink.send(frames[i], flags).has_value();
  }
  Count(relay.id, direction, sent ? &what : nullptr);
}

void FaultTransport::Count(int id, Direction direction, const Delivered* delivered) {
  {
    MutexLock lock(&mu_);
    ConnectionStats& stats = conns_[id].stats;
    DirectionCounters& c = direction == Direction::kOutbound ? stats.outbound : stats.inbound;
    if (delivered == nullptr) {
      ++c.dropped;
    } else {
      ++c.forwarded;
      c.forwarded_bytes += delivered->bytes;
      if (delivered->type) ++c.forwarded_by_type[*delivered->type];
    }
  }
  changed_.NotifyAll();
}

void FaultTransport::RelayLoop(std::stop_token stop) {
  std::vector<std::unique_ptr<Relay>> relays;  // owned by this thread
  std::vector<zmq::pollitem_t> items;
  while (!stop.stop_requested()) {
    {
      MutexLock lock(&mu_);
      for (auto& r : adopting_) relays.push_back(std::move(r));
      adopting_.clear();
    }
    items.assign(1, zmq::pollitem_t{nullptr, waker_.fd(), ZMQ_POLLIN, 0});
    auto wake_at = SteadyClock::now() + std::chrono::seconds(1);
    for (const auto& r : relays) {
      items.push_back({r->front.handle(), 0, ZMQ_POLLIN, 0});
      items.push_back({r->back.handle(), 0, ZMQ_POLLIN, 0});
      for (const std::deque<Held>& held : r->held) {
        if (!held.empty()) wake_at = std::min(wake_at, held.front().due);
      }
    }
    try {
      zmq::poll(items.data(), items.size(),
                std::chrono::milliseconds(PollTimeoutMs(wake_at, 1000)));
      if (items[0].revents & ZMQ_POLLIN) waker_.Drain();
      for (size_t i = 0; i < relays.size(); ++i) {
        if (items[1 + 2 * i].revents & ZMQ_POLLIN) Pump(*relays[i], Direction::kOutbound);
        if (items[2 + 2 * i].revents & ZMQ_POLLIN) Pump(*relays[i], Direction::kInbound);
      }
      const auto now = SteadyClock::now();
      for (const auto& r : relays) {
        for (Direction d : {Direction::kOutbound, Direction::kInbound}) {
          std::deque<Held>& held = r->held[Index(d)];
          while (!held.empty() && held.front().due <= now) {
            Deliver(*r, d, held.front().frames);
            held.pop_front();
          }
        }
      }
    } catch (const zmq::error_t& e) {
      LOG(ERROR) << "FaultTransport relay thread stops: " << e.what();
      return;
    }
  }
}

}  // namespace eddy::testing
