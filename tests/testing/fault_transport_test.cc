// FaultTransport against a real in-process cluster: cut, heal, dropped
// heartbeats, delays and the integrity of relayed key/value frames.
#include "tests/testing/fault_transport.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "common/net.h"
#include "common/partition.h"
#include "tests/testing/local_cluster.h"

namespace eddy::testing {
namespace {

using std::chrono::milliseconds;

LabelMatch DataLink(int worker, int server) {
  LabelMatch m;
  m.from_role = NodeRole::kWorker;
  m.from_id = worker;
  m.to_role = NodeRole::kServer;
  m.to_id = server;
  m.purpose = ConnectionPurpose::kData;
  return m;
}

LabelMatch ControlLink(NodeRole role, int id) {
  LabelMatch m;
  m.from_role = role;
  m.from_id = id;
  m.to_role = NodeRole::kScheduler;
  m.purpose = ConnectionPurpose::kControl;
  return m;
}

std::unique_ptr<LocalCluster> StartCluster(const LocalClusterOptions& o) {
  auto c = LocalCluster::Start(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(c).value() : nullptr;
}

// `n` distinct keys that server `server` of `num_servers` owns.
std::vector<uint64_t> KeysOf(uint32_t server, uint32_t num_servers, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<uint64_t> keys;
  while (keys.size() < n) {
    uint64_t k = rng();
    if (ServerOfKey(k, num_servers) == server) keys.push_back(k);
  }
  return keys;
}

std::vector<float> Grads(size_t n, float scale) {
  std::vector<float> g(n);
  for (size_t i = 0; i < n; ++i) g[i] = scale * static_cast<float>(i % 97 + 1);
  return g;
}

// FNV-1a over the bytes of `values`.
uint64_t Checksum(std::span<const float> values) {
  uint64_t h = 1469598103934665603ULL;
  const auto* bytes = reinterpret_cast<const unsigned char*>(values.data());
  for (size_t i = 0; i < values.size_bytes(); ++i) h = (h ^ bytes[i]) * 1099511628211ULL;
  return h;
}

double Millis(SteadyClock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

// Receives one multipart message from `router` within `timeout`: [id, frames...].
std::vector<std::string> RecvWithin(zmq::socket_t& router, milliseconds timeout) {
  std::vector<std::string> frames;
  zmq::pollitem_t item = {router.handle(), 0, ZMQ_POLLIN, 0};
  if (zmq::poll(&item, 1, timeout) == 0) return frames;
  zmq::message_t m;
  do {
    if (!router.recv(m, zmq::recv_flags::none)) break;
    frames.push_back(m.to_string());
  } while (m.more());
  return frames;
}

TEST(FaultTransportTest, KeepsRoutingIdsAndDropsByProbabilityUnderStandingRules) {
  FaultTransport transport(/*seed=*/7);
  zmq::context_t context;
  zmq::socket_t router(context, zmq::socket_type::router);
  ConfigureSocket(router, 0, 0);
  auto endpoint = BindTcp(router, "127.0.0.1", 0);
  ASSERT_TRUE(endpoint.ok()) << endpoint.status();
  const ConnectionLabel label{NodeRole::kReplica, 3, NodeRole::kVersionService, -1,
                              ConnectionPurpose::kData};
  // A rule given before the connection exists applies once it is made.
  LabelMatch replicas;
  replicas.from_role = NodeRole::kReplica;
  DropRule half;
  half.probability = 0.5;
  half.direction = Direction::kOutbound;
  transport.Drop(replicas, half);

  std::vector<zmq::socket_t> dealers;
  for (std::string id : {"a", "b"}) {
    dealers.emplace_back(context, zmq::socket_type::dealer);
    ConfigureSocket(dealers.back(), 0, 0);
    dealers.back().set(zmq::sockopt::routing_id, id);
    ASSERT_TRUE(transport.Connect(dealers.back(), *endpoint, label).ok());
  }
  zmq::socket_t sub(context, zmq::socket_type::sub);
  EXPECT_EQ(transport.Connect(sub, *endpoint, label).code(), StatusCode::kInvalidArgument);

  // Each peer keeps its own routing id through its own relay.
  LabelMatch second;
  second.connection = 1;
  transport.Clear(second);
  ASSERT_TRUE(dealers[1].send(zmq::str_buffer("hello"), zmq::send_flags::none));
  ASSERT_TRUE(transport.WaitForForwarded(second, Direction::kOutbound, 1, milliseconds(10'000)));
  std::vector<std::string> got = RecvWithin(router, milliseconds(10'000));
  ASSERT_EQ(got, (std::vector<std::string>{"b", "hello"}));
  ASSERT_TRUE(router.send(zmq::str_buffer("b"), zmq::send_flags::sndmore));
  ASSERT_TRUE(router.send(zmq::str_buffer("back"), zmq::send_flags::none));
  zmq::message_t reply;
  zmq::pollitem_t item = {dealers[1].handle(), 0, ZMQ_POLLIN, 0};
  ASSERT_EQ(zmq::poll(&item, 1, milliseconds(10'000)), 1);
  ASSERT_TRUE(dealers[1].recv(reply, zmq::recv_flags::none));
  EXPECT_EQ(reply.to_string(), "back");

  // About half of connection 0's messages pass; exactly those arrive, all from "a".
  constexpr int kMessages = 200;
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_TRUE(dealers[0].send(zmq::buffer(std::to_string(i)), zmq::send_flags::none));
  }
  LabelMatch first;
  first.connection = 0;
  ASSERT_TRUE(transport.WaitFor(
      [&](const std::vector<ConnectionStats>& c) {
        DirectionCounters t = Total(c, first, Direction::kOutbound);
        return t.forwarded + t.dropped == kMessages;
      },
      milliseconds(10'000)));
  const DirectionCounters t = Total(transport.Connections(), first, Direction::kOutbound);
  EXPECT_GT(t.forwarded, kMessages / 4);
  EXPECT_GT(t.dropped, kMessages / 4);
  int last = -1;
  for (uint64_t i = 0; i < t.forwarded; ++i) {
    got = RecvWithin(router, milliseconds(10'000));
    ASSERT_EQ(got.size(), 2u) << i;
    EXPECT_EQ(got[0], "a");
    EXPECT_GT(std::stoi(got[1]), last) << "order kept";
    last = std::stoi(got[1]);
  }
  EXPECT_TRUE(RecvWithin(router, milliseconds(0)).empty());
}

TEST(FaultTransportTest, LabelsEveryConnectionOfTheCluster) {
  FaultTransport transport;
  LocalClusterOptions o;
  o.transport = &transport;
  auto cluster = StartCluster(o);
  ASSERT_TRUE(cluster);
  EXPECT_EQ(cluster->transport(), &transport);
  const std::vector<ConnectionStats> conns = transport.Connections();
  // 2 servers and 2 workers to the scheduler, each worker to each server.
  ASSERT_EQ(conns.size(), 8u);
  for (int id = 0; id < 2; ++id) {
    for (NodeRole role : {NodeRole::kServer, NodeRole::kWorker}) {
      LabelMatch m = ControlLink(role, id);
      EXPECT_EQ(std::count_if(conns.begin(), conns.end(),
                              [&](const ConnectionStats& c) { return m.Matches(c.id, c.label); }),
                1)
          << NodeRoleName(role) << " " << id;
    }
    for (int s = 0; s < 2; ++s) {
      LabelMatch m = DataLink(id, s);
      EXPECT_EQ(std::count_if(conns.begin(), conns.end(),
                              [&](const ConnectionStats& c) { return m.Matches(c.id, c.label); }),
                1);
    }
  }
  EXPECT_TRUE(cluster->Shutdown().ok());
  // Registration and shutdown went both ways over every control relay.
  for (const ConnectionStats& c : transport.Connections()) {
    if (c.label.purpose != ConnectionPurpose::kControl) continue;
    EXPECT_GE(c.outbound.forwarded_by_type.count(proto::REGISTER), 1u) << c.label.ToString();
    EXPECT_GE(c.inbound.forwarded_by_type.count(proto::CLUSTER_VIEW), 1u) << c.label.ToString();
  }
}

TEST(FaultTransportTest, CutDataLinkFailsPushesUntilHealedAndAckedPushesApplyOnce) {
  FaultTransport transport;
  LocalClusterOptions o;
  o.transport = &transport;
  o.tables = "emb:dim=2,opt=sgd,lr=1";
  o.request_timeout = milliseconds(1500);
  auto cluster = StartCluster(o);
  ASSERT_TRUE(cluster);
  const std::vector<uint64_t> keys0 = KeysOf(0, 2, 50, 1);
  const std::vector<uint64_t> keys1 = KeysOf(1, 2, 50, 2);
  std::vector<float> applied0(keys0.size() * 2, 0.0f), applied1(keys1.size() * 2, 0.0f);
  auto push = [&](int worker, const std::vector<uint64_t>& keys, float scale,
                  std::vector<float>* applied) {
    std::vector<float> g = Grads(keys.size() * 2, scale);
    Status s = cluster->client(worker).Push("emb", keys, g)->Wait();
    if (s.ok()) {
      for (size_t i = 0; i < g.size(); ++i) (*applied)[i] -= g[i];  // sgd, lr = 1
    }
    return s;
  };
  ASSERT_TRUE(push(0, keys1, 1, &applied1).ok());

  const LabelMatch cut = DataLink(0, 1);
  transport.Cut(cut);
  const auto start = SteadyClock::now();
  Status failed = push(0, keys1, 10, &applied1);
  const auto took = SteadyClock::now() - start;
  EXPECT_TRUE(failed.code() == StatusCode::kDeadlineExceeded ||
              failed.code() == StatusCode::kUnavailable)
      << failed;
  EXPECT_LT(Millis(took), 1500 + 1000) << "within the request timeout (and the client's check)";
  EXPECT_GE(Total(transport.Connections(), cut, Direction::kOutbound).dropped, 1u);
  // The other server, and the cut server from another worker, still answer.
  EXPECT_TRUE(push(0, keys0, 2, &applied0).ok());
  EXPECT_TRUE(push(1, keys1, 3, &applied1).ok());

  transport.Heal(cut);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(push(0, keys1, 4 + i, &applied1).ok()) << i;
  const uint64_t dropped = Total(transport.Connections(), cut, Direction::kOutbound).dropped;

  // Every acknowledged push, and only those, was applied exactly once.
  for (int worker = 0; worker < 2; ++worker) {
    auto p0 = cluster->client(worker).Pull("emb", keys0);
    auto p1 = cluster->client(worker).Pull("emb", keys1);
    ASSERT_TRUE(p0->Wait().ok());
    ASSERT_TRUE(p1->Wait().ok());
    EXPECT_TRUE(std::equal(applied0.begin(), applied0.end(), p0->values().begin()));
    EXPECT_TRUE(std::equal(applied1.begin(), applied1.end(), p1->values().begin()));
  }
  EXPECT_EQ(Total(transport.Connections(), cut, Direction::kOutbound).dropped, dropped)
      << "nothing dropped after healing";
  EXPECT_TRUE(cluster->Shutdown().ok());
}

TEST(FaultTransportTest, DroppedHeartbeatsMakeTheSchedulerLoseTheServer) {
  FaultTransport transport;
  LocalClusterOptions o;
  o.transport = &transport;
  o.heartbeat_interval = milliseconds(100);
  o.node_timeout = milliseconds(1500);
  auto cluster = StartCluster(o);
  ASSERT_TRUE(cluster);
  const LabelMatch server1 = ControlLink(NodeRole::kServer, 1);
  // Heartbeats flow before the rule.
  ASSERT_TRUE(transport.WaitFor(
      [&](const std::vector<ConnectionStats>& c) {
        return Total(c, server1, Direction::kOutbound).forwarded_by_type[proto::HEARTBEAT] >= 2;
      },
      milliseconds(5000)));

  transport.Drop(server1, DropType(proto::HEARTBEAT, Direction::kOutbound));
  const auto start = SteadyClock::now();
  const uint64_t heartbeats = Total(transport.Connections(), server1, Direction::kOutbound)
                                  .forwarded_by_type[proto::HEARTBEAT];
  // The scheduler's ABORT reaches worker 0 over its control relay.
  const LabelMatch worker0 = ControlLink(NodeRole::kWorker, 0);
  ASSERT_TRUE(transport.WaitFor(
      [&](const std::vector<ConnectionStats>& c) {
        return Total(c, worker0, Direction::kInbound).forwarded_by_type[proto::ABORT] >= 1;
      },
      milliseconds(10'000)));
  const double took = Millis(SteadyClock::now() - start);
  EXPECT_GE(took, 1500 - 100 - 50) << "not before node_timeout after the last heartbeat";
  EXPECT_LE(took, 1500 + 1000) << "within node_timeout (plus the scheduler's check)";
  EXPECT_TRUE(transport.WaitForDropped(server1, Direction::kOutbound, 1, milliseconds(0)));
  // At most one heartbeat was already in the relay when the rule came.
  EXPECT_LE(Total(transport.Connections(), server1, Direction::kOutbound)
                .forwarded_by_type[proto::HEARTBEAT],
            heartbeats + 1);

  Status s = cluster->Shutdown();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s;
  EXPECT_NE(s.message().find("server 1 ("), std::string::npos) << s;
  EXPECT_NE(s.message().find("stopped answering"), std::string::npos) << s;
}

TEST(FaultTransportTest, DelayHoldsMessagesAtLeastThatLongEachWay) {
  FaultTransport transport;
  LocalClusterOptions o;
  o.transport = &transport;
  o.num_servers = 1;
  o.num_workers = 1;
  auto cluster = StartCluster(o);
  ASSERT_TRUE(cluster);
  const std::vector<uint64_t> keys = {1, 2, 3};
  ASSERT_TRUE(cluster->client(0).Pull("emb", keys)->Wait().ok());

  const LabelMatch data = DataLink(0, 0);
  transport.Delay(data, milliseconds(150), Direction::kOutbound);
  transport.Delay(data, milliseconds(250), Direction::kInbound);
  // Several requests in flight keep their order and each waits both delays.
  std::vector<worker::OpPtr> ops;
  std::vector<SteadyClock::time_point> sent;
  for (int i = 0; i < 4; ++i) {
    sent.push_back(SteadyClock::now());
    ops.push_back(cluster->client(0).Pull("emb", keys));
  }
  for (size_t i = 0; i < ops.size(); ++i) {
    ASSERT_TRUE(ops[i]->Wait().ok());
    EXPECT_GE(Millis(SteadyClock::now() - sent[i]), 400) << i;
  }

  transport.Clear(data);
  const auto start = SteadyClock::now();
  ASSERT_TRUE(cluster->client(0).Pull("emb", keys)->Wait().ok());
  EXPECT_LT(Millis(SteadyClock::now() - start), 400) << "the delay is gone after Clear";
  EXPECT_TRUE(cluster->Shutdown().ok());
}

TEST(FaultTransportTest, RelayForwardsLargeKeyAndValueFramesIntact) {
  FaultTransport transport;
  LocalClusterOptions o;
  o.transport = &transport;
  o.tables = "emb:dim=8,opt=sgd,lr=1";
  // Under TSan a first large push can stall the process for seconds with or
  // without the relays; this test is about the frames, not liveness.
  o.node_timeout = std::chrono::seconds(60);
  auto cluster = StartCluster(o);
  ASSERT_TRUE(cluster);
  constexpr size_t kKeys = 100'000;
  std::mt19937_64 rng(42);
  std::vector<uint64_t> keys(kKeys);
  for (uint64_t& k : keys) k = rng();
  std::sort(keys.begin(), keys.end());
  keys.erase(std::unique(keys.begin(), keys.end()), keys.end());
  std::vector<float> grads(keys.size() * 8);
  std::uniform_real_distribution<float> value(-1, 1);
  for (float& g : grads) g = value(rng);
  ASSERT_TRUE(cluster->client(0).Push("emb", keys, grads)->Wait().ok());

  auto pull = cluster->client(1).Pull("emb", keys);
  ASSERT_TRUE(pull->Wait().ok());
  std::vector<float> expected(grads.size());
  for (size_t i = 0; i < grads.size(); ++i) expected[i] = -grads[i];
  ASSERT_EQ(pull->values().size(), expected.size());
  EXPECT_EQ(Checksum(pull->values()), Checksum(expected));
  EXPECT_EQ(std::memcmp(pull->values().data(), expected.data(), expected.size() * sizeof(float)),
            0);
  // The arrays went through the relays: worker 0 sent them, worker 1 received them.
  const auto conns = transport.Connections();
  LabelMatch from0 = DataLink(0, 0), to1 = DataLink(1, 0);
  from0.to_id.reset();
  to1.to_id.reset();
  const uint64_t bytes = keys.size() * (8 + 8 * sizeof(float));
  EXPECT_GE(Total(conns, from0, Direction::kOutbound).forwarded_bytes, bytes);
  EXPECT_GE(Total(conns, to1, Direction::kInbound).forwarded_bytes, keys.size() * 8 * 4);
  EXPECT_TRUE(cluster->Shutdown().ok());
}

}  // namespace
}  // namespace eddy::testing
