// A real server (in an in-process cluster) fed with bad input through a raw
// socket: it answers with an error status or drops what it cannot parse, keeps
// serving, and never changes stored values because of a bad request.
#include "server/server_node.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>

#include "common/message.h"
#include "common/partition.h"
#include "tests/testing/local_cluster.h"

namespace eddy::server {
namespace {

using testing::LocalCluster;
using testing::LocalClusterOptions;

class ServerBadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    LocalClusterOptions o;
    o.num_servers = 2;
    o.num_workers = 1;
    o.tables = "emb:dim=4,opt=sgd,lr=1;w:shape=10,opt=sgd,lr=1";
    o.max_request_keys = 1000;
    auto c = LocalCluster::Start(o);
    ASSERT_TRUE(c.ok()) << c.status();
    cluster_ = std::move(c).value();
    for (int i = 0; i < 2; ++i) {
      if (cluster_->server(i).server_id() == 0) server0_ = &cluster_->server(i);
    }
    ASSERT_NE(server0_, nullptr);
    socket_ = std::make_unique<zmq::socket_t>(cluster_->context(), zmq::socket_type::dealer);
    socket_->set(zmq::sockopt::linger, 0);
    socket_->connect(server0_->endpoint());
    for (uint64_t k = 0; keys0_.size() < 8; ++k) {
      if (ServerOfKey(k, 2) == 0) {
        keys0_.push_back(k);
      } else if (keys1_.empty()) {
        keys1_.push_back(k);
      }
    }
  }

  void TearDown() override {
    socket_.reset();
    if (cluster_) {
      EXPECT_TRUE(cluster_->Shutdown().ok());
    }
  }

  // Sends raw frames; returns the reply, or nullopt if none comes within 5 s.
  std::optional<Message> Exchange(const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      socket_->send(zmq::buffer(frames[i]),
                    i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
    return Receive();
  }
  std::optional<Message> Exchange(const Message& m) {
    EXPECT_TRUE(SendMessage(*socket_, m).ok());
    return Receive();
  }
  std::optional<Message> Receive() {
    zmq::pollitem_t item = {socket_->handle(), 0, ZMQ_POLLIN, 0};
    if (zmq::poll(&item, 1, std::chrono::milliseconds(5000)) == 0) return std::nullopt;
    auto m = RecvMessage(*socket_);
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) return std::nullopt;
    return std::move(m).value();
  }

  Message Request(proto::MsgType type, const std::string& table, std::vector<uint64_t> keys,
                  size_t floats, uint32_t dim = 4) {
    Message m{MakeHeader(type, ++id_), Buffer::CopyOf(std::span<const uint64_t>(keys)), {}};
    m.header.set_table(table);
    m.header.set_num_keys(keys.size());
    m.header.set_value_dim(dim);
    if (floats > 0) {
      std::vector<float> v(floats, -1.0f);
      m.values = Buffer::CopyOf(std::span<const float>(v));
      m.header.set_dtype(proto::FLOAT32);
    }
    return m;
  }

  // The values of keys0_ are still all zero (no bad request touched them).
  void ExpectStoreUntouched() {
    auto pull = cluster_->client(0).Pull("emb", keys0_);
    ASSERT_TRUE(pull->Wait().ok());
    for (float v : pull->values()) ASSERT_EQ(v, 0.0f);
    auto dense = cluster_->client(0).PullDense("w");
    ASSERT_TRUE(dense->Wait().ok());
    for (float v : dense->values()) ASSERT_EQ(v, 0.0f);
  }

  std::unique_ptr<LocalCluster> cluster_;
  ServerNode* server0_ = nullptr;
  std::unique_ptr<zmq::socket_t> socket_;
  std::vector<uint64_t> keys0_, keys1_;
  uint64_t id_ = 1000;
};

TEST_F(ServerBadInputTest, ErrorRepliesForInvalidRequests) {
  struct Case {
    const char* what;
    Message request;
    StatusCode code;
  };
  std::vector<Case> cases;
  cases.push_back({"unknown table", Request(proto::PUSH, "nope", keys0_, keys0_.size() * 4),
                   StatusCode::kNotFound});
  cases.push_back(
      {"dense name on sparse op", Request(proto::PULL, "w", keys0_, 0), StatusCode::kNotFound});
  cases.push_back({"short values", Request(proto::PUSH, "emb", keys0_, keys0_.size() * 4 - 1),
                   StatusCode::kInvalidArgument});
  cases.push_back({"wrong dim", Request(proto::PUSH, "emb", keys0_, keys0_.size() * 3, 3),
                   StatusCode::kInvalidArgument});
  cases.push_back({"empty", Request(proto::PULL, "emb", {}, 0), StatusCode::kInvalidArgument});
  cases.push_back({"oversized",
                   Request(proto::PULL, "emb", std::vector<uint64_t>(1001, keys0_[0]), 0),
                   StatusCode::kResourceExhausted});
  std::vector<uint64_t> mixed = keys0_;
  mixed.push_back(keys1_[0]);
  cases.push_back({"wrong server", Request(proto::PUSH, "emb", mixed, mixed.size() * 4),
                   StatusCode::kInvalidArgument});
  Message lying = Request(proto::PUSH, "emb", keys0_, keys0_.size() * 4);
  lying.header.set_num_keys(keys0_.size() + 1);
  cases.push_back({"num_keys disagrees with key frame", lying, StatusCode::kInvalidArgument});
  Message no_dtype = Request(proto::PUSH, "emb", keys0_, keys0_.size() * 4);
  no_dtype.header.set_dtype(proto::DTYPE_NONE);
  cases.push_back({"no dtype", no_dtype, StatusCode::kInvalidArgument});
  Message reg = Request(proto::REGISTER, "emb", keys0_, 0);
  cases.push_back({"control type to a server", reg, StatusCode::kUnimplemented});
  Message unknown = Request(proto::PULL, "emb", keys0_, 0);
  unknown.header.set_type(static_cast<proto::MsgType>(77));
  cases.push_back({"unknown type", unknown, StatusCode::kUnimplemented});
  Message clock = Request(proto::CLOCK, "", {}, 0);
  clock.header.set_sender(99);
  clock.header.set_clock(1);
  cases.push_back({"clock from an unknown worker", clock, StatusCode::kInvalidArgument});
  Message dense_wrong = Request(proto::PUSH_DENSE, "w", {}, 3);
  cases.push_back({"dense wrong length", dense_wrong, StatusCode::kInvalidArgument});
  Message dense_offset = Request(proto::PUSH_DENSE, "w", {}, 5);
  dense_offset.header.set_value_count(5);
  dense_offset.header.set_offset(3);
  cases.push_back({"dense wrong offset", dense_offset, StatusCode::kInvalidArgument});

  for (Case& c : cases) {
    auto reply = Exchange(c.request);
    ASSERT_TRUE(reply) << c.what << ": no reply";
    EXPECT_EQ(reply->header.request_id(), c.request.header.request_id()) << c.what;
    Status s = StatusFromHeader(reply->header);
    EXPECT_EQ(s.code(), c.code) << c.what << ": " << s;
    EXPECT_FALSE(s.message().empty()) << c.what;
  }
  EXPECT_GE(server0_->stats().error_replies, cases.size());
  ExpectStoreUntouched();
}

TEST_F(ServerBadInputTest, OtherProtocolVersionIsRefusedClearly) {
  Message m = Request(proto::PULL, "emb", keys0_, 0);
  m.header.set_protocol_version(kProtocolVersion + 1);
  auto reply = Exchange(m);
  ASSERT_TRUE(reply);
  Status s = StatusFromHeader(reply->header);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("protocol version"), std::string::npos) << s;
  ExpectStoreUntouched();
}

TEST_F(ServerBadInputTest, GarbageFramesAreDroppedAndServingGoesOn) {
  std::mt19937_64 rng(42);
  auto random_bytes = [&](size_t n) {
    std::string s(n, '\0');
    for (char& ch : s) ch = static_cast<char>(rng());
    return s;
  };
  const uint64_t dropped_before = server0_->stats().dropped_messages;
  int sent = 0;
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string> frames;
    int count = 1 + static_cast<int>(rng() % 5);
    if (count == 3) count = 4;  // three frames may parse by chance as a valid header; see below
    for (int f = 0; f < count; ++f) frames.push_back(random_bytes(rng() % 200));
    for (size_t i = 0; i < frames.size(); ++i) {
      socket_->send(zmq::buffer(frames[i]),
                    i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
    ++sent;
  }
  // Three frames with a random header: either a parse failure (dropped) or an error reply.
  int replies = 0;
  for (int round = 0; round < 200; ++round) {
    std::vector<std::string> frames = {random_bytes(rng() % 64), random_bytes(rng() % 64),
                                       random_bytes(rng() % 64)};
    for (size_t i = 0; i < 3; ++i) {
      socket_->send(zmq::buffer(frames[i]),
                    i < 2 ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  }
  // A valid request afterwards is answered: everything before it was handled.
  Message ok = Request(proto::PULL, "emb", keys0_, 0);
  EXPECT_TRUE(SendMessage(*socket_, ok).ok());
  while (true) {
    auto reply = Receive();
    ASSERT_TRUE(reply) << "server stopped answering";
    if (reply->header.request_id() == ok.header.request_id() && reply->header.status_code() == 0)
      break;
    EXPECT_NE(reply->header.status_code(), 0);
    ++replies;
  }
  EXPECT_GE(server0_->stats().dropped_messages - dropped_before, static_cast<uint64_t>(sent));
  ExpectStoreUntouched();
}

TEST_F(ServerBadInputTest, NonZmqBytesOnTheTcpPortDoNotHurt) {
  const std::string ep = server0_->endpoint();  // tcp://127.0.0.1:PORT
  const int port = std::stoi(ep.substr(ep.rfind(':') + 1));
  std::mt19937_64 rng(9);
  for (int conn = 0; conn < 20; ++conn) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    std::string junk(1 + rng() % 4096, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    ssize_t n = send(fd, junk.data(), junk.size(), MSG_NOSIGNAL);
    (void)n;
    close(fd);
  }
  ExpectStoreUntouched();
  auto reply = Exchange(Request(proto::PULL, "emb", keys0_, 0));
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->header.status_code(), 0);
}

}  // namespace
}  // namespace eddy::server
