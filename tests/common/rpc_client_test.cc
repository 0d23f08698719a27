// RpcClient against a scripted ROUTER peer on its own thread: replies, error
// statuses, deadlines, stale replies of timed-out calls and interrupts.
#include "common/rpc_client.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/event_loop.h"

namespace eddy {
namespace {

using std::chrono::milliseconds;

constexpr milliseconds kLong{30'000};

struct Request {
  Envelope envelope;
  Message message;
};

// A ROUTER peer: `script` sees every request (and all earlier ones held) and
// sends what it likes. Runs an EventLoop on its own thread until destroyed.
class ScriptedPeer {
 public:
  using Script = std::function<void(zmq::socket_t&, std::vector<Request>&)>;

  ScriptedPeer(zmq::context_t& ctx, Script script)
      : router_(ctx, zmq::socket_type::router), script_(std::move(script)) {
    router_.bind("tcp://127.0.0.1:*");
    endpoint_ = router_.get(zmq::sockopt::last_endpoint);
    thread_ = std::jthread([this] {
      EventLoop loop;
      std::vector<Request> held;
      loop.AddSocket(router_, [&] {
        Request r;
        StatusOr<Message> m = RecvMessage(router_, &r.envelope);
        if (!m.ok()) return loop.Exit(m.status());
        r.message = std::move(m).value();
        held.push_back(std::move(r));
        script_(router_, held);
      });
      loop.AddWaker(stop_, [&] { loop.Exit(OkStatus()); });
      Status s = loop.Run();
      EXPECT_TRUE(s.ok()) << s;
    });
  }
  ~ScriptedPeer() {
    stop_.Notify();
    thread_.join();
  }
  const std::string& endpoint() const { return endpoint_; }

 private:
  zmq::socket_t router_;
  Script script_;
  std::string endpoint_;
  Waker stop_;
  std::jthread thread_;
};

void Reply(zmq::socket_t& router, const Request& r, const Status& status = OkStatus()) {
  Message reply{MakeHeader(proto::REPLY, r.message.header.request_id()), {}, {}};
  reply.header.set_payload("re:" + r.message.header.payload());
  SetStatus(status, &reply.header);
  ASSERT_TRUE(SendMessage(router, reply, r.envelope).ok());
}

// A script that holds a request until the next one comes, then answers both in order.
void AnswerInPairs(zmq::socket_t& router, std::vector<Request>& held) {
  if (held.size() < 2) return;
  for (const Request& r : held) Reply(router, r);
  held.clear();
}

Message MakeRequest(proto::MsgType type, std::string payload) {
  Message m{MakeHeader(type), {}, {}};
  m.header.set_payload(std::move(payload));
  return m;
}

class RpcClientTest : public ::testing::Test {
 protected:
  zmq::context_t ctx_;
};

TEST_F(RpcClientTest, ReturnsTheReplyWithFreshRequestIds) {
  ScriptedPeer peer(
      ctx_, [](zmq::socket_t& router, std::vector<Request>& held) { Reply(router, held.back()); });
  RpcClient client(ctx_);
  ASSERT_TRUE(client.Connect(peer.endpoint()).ok());
  for (int i = 1; i <= 3; ++i) {
    StatusOr<Message> got = client.Call(MakeRequest(proto::PREDICT, std::to_string(i)), kLong);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->header.request_id(), static_cast<uint64_t>(i));
    EXPECT_EQ(got->header.payload(), "re:" + std::to_string(i));
  }
  EXPECT_EQ(client.stale_replies(), 0u);
}

TEST_F(RpcClientTest, ReplyStatusBecomesTheCallsStatus) {
  ScriptedPeer peer(ctx_, [](zmq::socket_t& router, std::vector<Request>& held) {
    Reply(router, held.back(), NotFoundError("version 9 is not cached"));
  });
  RpcClient client(ctx_);
  ASSERT_TRUE(client.Connect(peer.endpoint()).ok());
  StatusOr<Message> got = client.Call(MakeRequest(proto::PREDICT, ""), kLong);
  EXPECT_EQ(got.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(got.status().message(), "version 9 is not cached");
}

TEST_F(RpcClientTest, DeadlineNamesTypeAndPeerAndTheLateReplyIsSkipped) {
  // The first request is answered only when the second arrives, first reply first.
  ScriptedPeer peer(ctx_, AnswerInPairs);
  RpcClient client(ctx_);
  ASSERT_TRUE(client.Connect(peer.endpoint()).ok());
  const auto start = SteadyClock::now();
  StatusOr<Message> late = client.Call(MakeRequest(proto::VERSION_LIST, "first"), milliseconds(50));
  EXPECT_GE(SteadyClock::now() - start, milliseconds(50));
  EXPECT_EQ(late.status().code(), StatusCode::kDeadlineExceeded);
  EXPECT_NE(late.status().message().find("VERSION_LIST"), std::string::npos) << late.status();
  EXPECT_NE(late.status().message().find(peer.endpoint()), std::string::npos) << late.status();
  StatusOr<Message> got = client.Call(MakeRequest(proto::VERSION_LIST, "second"), kLong);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->header.payload(), "re:second");
  EXPECT_EQ(client.stale_replies(), 1u);
}

TEST_F(RpcClientTest, InterruptEndsTheCallOnlyWhenItSaysSo) {
  ScriptedPeer peer(ctx_, AnswerInPairs);
  RpcClient client(ctx_);
  ASSERT_TRUE(client.Connect(peer.endpoint()).ok());
  Waker waker;
  waker.Notify();
  StatusOr<Message> cancelled = client.Call(MakeRequest(proto::VERSION_WATCH, "a"), kLong,
                                            {.waker = &waker, .ends_call = {}});
  EXPECT_EQ(cancelled.status().code(), StatusCode::kCancelled) << cancelled.status();
  // A wake-up that does not end the call: it goes on to its reply.
  waker.Notify();
  int asked = 0;
  StatusOr<Message> got =
      client.Call(MakeRequest(proto::VERSION_LIST, "b"), kLong, {.waker = &waker, .ends_call = [&] {
                                                                   ++asked;
                                                                   return false;
                                                                 }});
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->header.payload(), "re:b");
  EXPECT_EQ(asked, 1);
  EXPECT_EQ(client.stale_replies(), 1u);
}

}  // namespace
}  // namespace eddy
