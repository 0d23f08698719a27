// The wire codec: header + raw key/value frames over a real ZeroMQ socket pair.
#include "common/message.h"

#include <gtest/gtest.h>

#include "common/buffer.h"

namespace eddy {
namespace {

class MessageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    a_.bind("inproc://message_test");
    b_.connect("inproc://message_test");
  }
  zmq::context_t ctx_;
  zmq::socket_t a_{ctx_, zmq::socket_type::pair};
  zmq::socket_t b_{ctx_, zmq::socket_type::pair};
};

Message MakePush(size_t n, uint32_t dim) {
  std::vector<uint64_t> keys(n);
  std::vector<float> values(n * dim);
  for (size_t i = 0; i < n; ++i) keys[i] = i * 0x9e3779b97f4a7c15ULL;
  for (size_t i = 0; i < values.size(); ++i) values[i] = static_cast<float>(i) * 0.5f;
  Message m{MakeHeader(proto::PUSH, 42), Buffer::FromVector(std::move(keys)),
            Buffer::FromVector(std::move(values))};
  m.header.set_table("emb");
  m.header.set_num_keys(n);
  m.header.set_value_dim(dim);
  m.header.set_dtype(proto::FLOAT32);
  return m;
}

TEST_F(MessageTest, RoundTripKeepsHeaderKeysAndValues) {
  Message sent = MakePush(1000, 8);
  ASSERT_TRUE(SendMessage(a_, sent).ok());
  StatusOr<Message> got = RecvMessage(b_);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->header.request_id(), 42u);
  EXPECT_EQ(got->header.table(), "emb");
  EXPECT_EQ(got->header.protocol_version(), kProtocolVersion);
  ASSERT_TRUE(ValidateFrames(*got).ok());
  Buffer keys = got->keys.Aligned(8), values = got->values.Aligned(4);
  EXPECT_TRUE(std::equal(keys.As<uint64_t>().begin(), keys.As<uint64_t>().end(),
                         sent.keys.As<uint64_t>().begin()));
  EXPECT_TRUE(std::equal(values.As<float>().begin(), values.As<float>().end(),
                         sent.values.As<float>().begin()));
}

TEST_F(MessageTest, LargeFramesAreSentWithoutCopying) {
  Message sent = MakePush(4096, 16);
  const void* owner_before = sent.values.owner().get();
  const long refs_before = sent.values.owner().use_count();
  ASSERT_TRUE(SendMessage(a_, sent).ok());
  // Over inproc the receiver gets the very same bytes: the frame still refers
  // to the sender's buffer (its owner is shared, not copied).
  StatusOr<Message> got = RecvMessage(b_);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->values.data(), sent.values.data());
  EXPECT_EQ(sent.values.owner().get(), owner_before);
  EXPECT_GT(sent.values.owner().use_count(), refs_before);
  got = CancelledError("drop");
  EXPECT_EQ(sent.values.owner().use_count(), refs_before);
}

TEST_F(MessageTest, EmptyFramesAndRoutingIdOnRouter) {
  zmq::socket_t router(ctx_, zmq::socket_type::router);
  zmq::socket_t dealer(ctx_, zmq::socket_type::dealer);
  router.bind("inproc://router_test");
  dealer.connect("inproc://router_test");
  Message pull{MakeHeader(proto::PULL_DENSE, 7), {}, {}};
  ASSERT_TRUE(SendMessage(dealer, pull).ok());
  std::string routing_id;
  StatusOr<Message> got = RecvMessage(router, &routing_id);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(routing_id.empty());
  EXPECT_TRUE(got->keys.empty());
  EXPECT_TRUE(got->values.empty());
  Message reply{MakeHeader(proto::REPLY, 7), {}, {}};
  SetStatus(NotFoundError("no such tensor"), &reply.header);
  ASSERT_TRUE(SendMessage(router, reply, routing_id).ok());
  StatusOr<Message> back = RecvMessage(dealer);
  ASSERT_TRUE(back.ok());
  Status s = StatusFromHeader(back->header);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(), "no such tensor");
}

TEST_F(MessageTest, EnvelopeCarriesEveryRoutingFrameAndRepliesReachThePeer) {
  zmq::socket_t router(ctx_, zmq::socket_type::router);
  zmq::socket_t dealer(ctx_, zmq::socket_type::dealer);
  router.bind("inproc://envelope_test");
  dealer.connect("inproc://envelope_test");
  // Two extra hops in front of the header, as a proxy or a REQ peer adds them.
  const Envelope hops = {"hop", ""};
  Message sent = MakePush(4096, 4);
  ASSERT_TRUE(SendMessage(dealer, sent, hops).ok());
  Envelope envelope;
  StatusOr<Message> got = RecvMessage(router, &envelope);
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(envelope.size(), 3u);
  EXPECT_FALSE(envelope[0].empty());  // the dealer's routing id
  EXPECT_EQ(envelope[1], "hop");
  EXPECT_EQ(envelope[2], "");
  EXPECT_EQ(got->header.request_id(), 42u);
  EXPECT_TRUE(ValidateFrames(*got).ok());
  // The reply's large value frame still travels without a copy.
  Message reply{MakeHeader(proto::REPLY, 42), {}, got->values};
  ASSERT_TRUE(SendMessage(router, reply, envelope).ok());
  // A DEALER has no routing id of its own: the remaining hops come as the envelope.
  Envelope back_envelope;
  StatusOr<Message> back = RecvMessage(dealer, &back_envelope);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back_envelope, hops);
  EXPECT_EQ(back->values.data(), sent.values.data());
}

TEST_F(MessageTest, EnvelopeOfAShortMessageStillNamesThePeer) {
  zmq::socket_t router(ctx_, zmq::socket_type::router);
  zmq::socket_t dealer(ctx_, zmq::socket_type::dealer);
  router.bind("inproc://short_envelope_test");
  dealer.connect("inproc://short_envelope_test");
  dealer.send(zmq::str_buffer("garbage"), zmq::send_flags::none);
  Envelope envelope;
  StatusOr<Message> got = RecvMessage(router, &envelope);
  EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
  ASSERT_EQ(envelope.size(), 1u);
  EXPECT_FALSE(envelope[0].empty());
}

TEST_F(MessageTest, WrongFrameCountAndGarbageHeaderAreErrors) {
  a_.send(zmq::str_buffer("only one frame"), zmq::send_flags::none);
  StatusOr<Message> one = RecvMessage(b_);
  EXPECT_EQ(one.status().code(), StatusCode::kInvalidArgument);
  for (int i = 0; i < 2; ++i) a_.send(zmq::str_buffer("x"), zmq::send_flags::sndmore);
  a_.send(zmq::str_buffer("x"), zmq::send_flags::sndmore);
  a_.send(zmq::str_buffer("x"), zmq::send_flags::none);
  EXPECT_EQ(RecvMessage(b_).status().code(), StatusCode::kInvalidArgument);
  // Three frames whose header is not a protobuf: invalid, and the next message still parses.
  a_.send(zmq::str_buffer("\xff\xff\xff\xff"), zmq::send_flags::sndmore);
  a_.send(zmq::str_buffer(""), zmq::send_flags::sndmore);
  a_.send(zmq::str_buffer(""), zmq::send_flags::none);
  EXPECT_EQ(RecvMessage(b_).status().code(), StatusCode::kInvalidArgument);
  ASSERT_TRUE(SendMessage(a_, MakePush(3, 2)).ok());
  EXPECT_TRUE(RecvMessage(b_).ok());
}

TEST_F(MessageTest, OtherProtocolVersionIsRefusedWithBothVersions) {
  Message m = MakePush(2, 2);
  m.header.set_protocol_version(kProtocolVersion + 5);
  ASSERT_TRUE(SendMessage(a_, m).ok());
  StatusOr<Message> got = RecvMessage(b_);
  EXPECT_EQ(got.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(got.status().message().find(std::to_string(kProtocolVersion + 5)), std::string::npos);
  EXPECT_NE(got.status().message().find("same Eddy release"), std::string::npos);
}

TEST(ValidateFramesTest, SizesMustAgreeWithTheHeader) {
  Message m = MakePush(10, 4);
  EXPECT_TRUE(ValidateFrames(m).ok());
  m.header.set_num_keys(11);
  EXPECT_FALSE(ValidateFrames(m).ok());
  m = MakePush(10, 4);
  m.header.set_value_dim(5);
  EXPECT_FALSE(ValidateFrames(m).ok());
  m = MakePush(10, 4);
  m.header.set_dtype(proto::DTYPE_NONE);
  EXPECT_FALSE(ValidateFrames(m).ok());
  m = MakePush(10, 4);
  m.header.set_type(proto::PULL);  // a pull carries no values
  EXPECT_FALSE(ValidateFrames(m).ok());
  Message dense{MakeHeader(proto::PUSH_DENSE), {}, Buffer::Allocate(4 * 6)};
  dense.header.set_value_count(6);
  dense.header.set_dtype(proto::FLOAT32);
  EXPECT_TRUE(ValidateFrames(dense).ok());
  dense.header.set_value_count(5);
  EXPECT_FALSE(ValidateFrames(dense).ok());
}

TEST(BufferTest, SliceSharesOwnershipAndAlignedCopiesOnlyWhenNeeded) {
  Buffer b = Buffer::Allocate(64);
  for (size_t i = 0; i < 64; ++i) b.mutable_data()[i] = std::byte(i);
  Buffer s = b.Slice(8, 16);
  EXPECT_EQ(s.data(), b.data() + 8);
  EXPECT_EQ(s.owner(), b.owner());
  EXPECT_EQ(s.Aligned(8).data(), s.data());
  Buffer odd = b.Slice(3, 16);
  Buffer aligned = odd.Aligned(8);
  EXPECT_NE(aligned.data(), odd.data());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(aligned.data()) % 8, 0u);
  EXPECT_EQ(std::memcmp(aligned.data(), odd.data(), 16), 0);
}

}  // namespace
}  // namespace eddy
