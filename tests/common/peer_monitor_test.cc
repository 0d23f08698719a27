#include "common/peer_monitor.h"

#include <gtest/gtest.h>

#include "common/message.h"
#include "common/net.h"

namespace eddy {
namespace {

// A peer's closed connection is reported with the descriptor its messages
// came on.
TEST(PeerMonitorTest, AClosedPeerConnectionIsReportedWithItsDescriptor) {
  zmq::context_t context;
  zmq::socket_t router(context, zmq::socket_type::router);
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  const std::string endpoint = router.get(zmq::sockopt::last_endpoint);
  StatusOr<std::unique_ptr<PeerMonitor>> monitor = PeerMonitor::Start(context, router);
  ASSERT_TRUE(monitor.ok()) << monitor.status();

  auto dealer = std::make_unique<zmq::socket_t>(context, zmq::socket_type::dealer);
  dealer->set(zmq::sockopt::linger, 0);
  dealer->set(zmq::sockopt::routing_id, "peer-a");
  dealer->connect(endpoint);
  ASSERT_TRUE(SendMessage(*dealer, Message{MakeHeader(proto::HEARTBEAT), {}, {}}).ok());
  std::string routing_id;
  int fd = -1;
  StatusOr<Message> got = RecvMessage(router, &routing_id, &fd);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(routing_id, "peer-a");
  ASSERT_GE(fd, 0);

  dealer.reset();  // the peer goes away
  std::optional<int> closed;
  while (!closed) {
    zmq::pollitem_t item{monitor->get()->socket().handle(), 0, ZMQ_POLLIN, 0};
    ASSERT_EQ(zmq::poll(&item, 1, std::chrono::milliseconds(10000)), 1) << "no event";
    closed = monitor->get()->ReadClosed();
  }
  EXPECT_EQ(*closed, fd);
}

}  // namespace
}  // namespace eddy
