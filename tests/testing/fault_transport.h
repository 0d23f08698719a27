// FaultTransport: a Transport for in-process tests that puts a relay between
// each connecting socket and its real endpoint, so a test can cut, heal, drop
// or delay a node's connections at any time and count what passed.
// Thread-safety: every public method may be called from any thread. One relay
// thread owns every relay socket; drop predicates run on it.
#ifndef EDDY_TESTS_TESTING_FAULT_TRANSPORT_H_
#define EDDY_TESTS_TESTING_FAULT_TRANSPORT_H_

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/mutex.h"
#include "common/net.h"
#include "common/proto/eddy.pb.h"
#include "common/status.h"
#include "common/transport.h"

namespace eddy::testing {

// The way a message travels on a connection.
enum class Direction {
  kOutbound,  // from the connecting node to its peer (requests)
  kInbound,   // from the peer back to the connecting node (replies)
};

// Selects connections: every field that is set must match. The empty match
// selects every connection.
struct LabelMatch {
  std::optional<int> connection;  // a FaultTransport connection id
  std::optional<NodeRole> from_role;
  std::optional<int> from_id;
  std::optional<NodeRole> to_role;
  std::optional<int> to_id;
  std::optional<ConnectionPurpose> purpose;

  bool Matches(int connection_id, const ConnectionLabel& label) const;
  // Exactly the connections labelled `label`.
  static LabelMatch Of(const ConnectionLabel& label);
};

// Which messages a connection drops.
struct DropRule {
  // Chance of dropping a message the rule selects (0: the rule is off).
  double probability = 1.0;
  // Selects messages by their decoded header; empty selects every message. A
  // message whose header does not parse is never selected by a predicate.
  std::function<bool(const proto::Header&)> predicate;
  std::optional<Direction> direction;  // empty: both ways
};
// A rule dropping every message of `type` (in `direction`, or both ways).
DropRule DropType(proto::MsgType type, std::optional<Direction> direction = std::nullopt);

struct DirectionCounters {
  uint64_t forwarded = 0;        // messages delivered
  uint64_t dropped = 0;          // by a cut, a drop rule or a vanished receiver
  uint64_t forwarded_bytes = 0;  // all frames of the delivered messages
  // Delivered messages by decoded header type (unparsable ones not counted).
  std::map<proto::MsgType, uint64_t> forwarded_by_type;
};

// A snapshot of one connection.
struct ConnectionStats {
  int id = -1;
  ConnectionLabel label;
  std::string endpoint;  // the real one
  bool cut = false;
  DirectionCounters outbound;
  DirectionCounters inbound;
  const DirectionCounters& in(Direction d) const {
    return d == Direction::kOutbound ? outbound : inbound;
  }
};

// Sums the counters of `match`'s connections in `direction`.
DirectionCounters Total(const std::vector<ConnectionStats>& connections, const LabelMatch& match,
                        Direction direction);

class FaultTransport final : public Transport {
 public:
  // `seed` makes probabilistic drops reproducible.
  explicit FaultTransport(uint64_t seed = 1);
  // Closes every relay: connections made through it go silent. Destroy it after
  // the nodes that use it.
  ~FaultTransport() override;
  FaultTransport(const FaultTransport&) = delete;
  FaultTransport& operator=(const FaultTransport&) = delete;

  // Binds a relay on loopback TCP, connects its far side to `endpoint` (with the
  // routing id of `socket`, if set) and `socket` to the relay. Each connection
  // gets its own relay, so a ROUTER peer sees one peer per connection. `socket`
  // must be a DEALER or REQ. Errors: InvalidArgument (socket type, endpoint),
  // Unavailable (bind).
  Status Connect(zmq::socket_t& socket, const std::string& endpoint,
                 const ConnectionLabel& who) override;

  // Rules. Each applies at once to the connections `match` selects and to the
  // ones opened later that it selects; a later rule on the same aspect of a
  // connection replaces an earlier one. Messages already held by a delay are
  // dropped when released while the connection is cut.
  //
  // Nothing passes either way (messages are dropped, as by a partition).
  void Cut(const LabelMatch& match);
  // Undoes Cut.
  void Heal(const LabelMatch& match);
  // Replaces the drop rule (a rule of probability 0 stops dropping).
  void Drop(const LabelMatch& match, DropRule rule);
  // Holds each message `delay` before forwarding it, keeping the order.
  void Delay(const LabelMatch& match, std::chrono::milliseconds delay,
             std::optional<Direction> direction = std::nullopt);
  // Heals, stops dropping and delaying.
  void Clear(const LabelMatch& match);

  // Every connection made so far, by id.
  std::vector<ConnectionStats> Connections() const;
  // Blocks until `pred(Connections())` holds (re-checked whenever a counter or
  // a connection changes) or `timeout` passes; returns whether it held. `pred`
  // runs with the transport's lock held: it must not call the transport.
  bool WaitFor(const std::function<bool(const std::vector<ConnectionStats>&)>& pred,
               std::chrono::milliseconds timeout) const;
  // Until `match`'s connections together have forwarded (or dropped) at least
  // `n` messages in `direction`.
  bool WaitForForwarded(const LabelMatch& match, Direction direction, uint64_t n,
                        std::chrono::milliseconds timeout) const;
  bool WaitForDropped(const LabelMatch& match, Direction direction, uint64_t n,
                      std::chrono::milliseconds timeout) const;

 private:
  struct Rules {
    bool cut = false;
    std::shared_ptr<const DropRule> drop;  // null: none
    std::chrono::milliseconds delay[2] = {};
  };
  struct Conn {
    ConnectionStats stats;
    Rules rules;
  };
  struct Relay;  // owned by the relay thread
  struct Held;
  struct Verdict {
    bool drop = false;
    std::chrono::milliseconds delay{0};
  };
  struct Delivered {
    uint64_t bytes = 0;
    std::optional<proto::MsgType> type;
  };

  bool WaitForCount(const LabelMatch& match, Direction direction,
                    uint64_t DirectionCounters::*counter, uint64_t n,
                    std::chrono::milliseconds timeout) const;
  // Applies `change` to the rules of `match`'s connections, now and later.
  void Change(const LabelMatch& match, std::function<void(Rules&)> change);
  void RelayLoop(std::stop_token stop);
  // Reads what is waiting on one side of `relay` and forwards, holds or drops it.
  void Pump(Relay& relay, Direction direction);
  Verdict Judge(int id, Direction direction, const std::vector<zmq::message_t>& frames);
  // Sends `frames` on `relay`'s far side for `direction` (unless cut) and counts.
  void Deliver(Relay& relay, Direction direction, std::vector<zmq::message_t>& frames);
  // Counts a message delivered, or dropped when `delivered` is nullptr.
  void Count(int id, Direction direction, const Delivered* delivered);
  std::vector<ConnectionStats> SnapshotLocked() const REQUIRES(mu_);

  zmq::context_t context_;  // the relays' sockets; declared first, closed last
  Waker waker_;             // wakes the relay thread for new relays and stop

  mutable Mutex mu_;
  mutable CondVar changed_;  // counters or connections changed
  std::vector<Conn> conns_ GUARDED_BY(mu_);
  std::vector<std::pair<LabelMatch, std::function<void(Rules&)>>> standing_ GUARDED_BY(mu_);
  std::vector<std::unique_ptr<Relay>> adopting_ GUARDED_BY(mu_);  // for the relay thread
  std::mt19937_64 rng_ GUARDED_BY(mu_);

  std::jthread relay_thread_;  // last: stops before the members it uses go
};

}  // namespace eddy::testing

#endif  // EDDY_TESTS_TESTING_FAULT_TRANSPORT_H_
