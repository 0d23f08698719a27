// VersionService over loopback: LIST, chunked FETCH with CRCs, WATCH answered on
// a commit or at its timeout, and garbage requests refused while serving goes on.
#include "model_store/version_service.h"

#include <gtest/gtest.h>

#include <thread>

#include "common/message.h"
#include "common/proto/serving.pb.h"
#include "model_store/crc32c.h"
#include "model_store/version_dir.h"
#include "model_store/version_writer.h"
#include "tests/serving/serving_test_util.h"

namespace eddy::model_store {
namespace {

using testing::TempDir;
using testing::TestModel;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class VersionServiceTest : public ::testing::Test {
 protected:
  void Start(uint64_t chunk_bytes = 64) {
    VersionServiceOptions o;
    o.root = root_.path();
    o.chunk_bytes = chunk_bytes;
    o.scan_interval = std::chrono::milliseconds(10'000);  // changes come through Notify()
    service_ = std::make_unique<VersionService>(context_, o);
    auto endpoint = service_->Bind();
    ASSERT_TRUE(endpoint.ok()) << endpoint.status();
    thread_ = std::jthread([this] { ASSERT_TRUE(service_->Run().ok()); });
    client_.set(zmq::sockopt::linger, 0);
    client_.connect(*endpoint);
  }
  void TearDown() override {
    if (service_) service_->Stop();
    if (thread_.joinable()) thread_.join();
  }

  Message Call(proto::MsgType type, const std::string& payload, int timeout_ms = 10'000) {
    Message request{MakeHeader(type, ++id_), {}, {}};
    request.header.set_payload(payload);
    EXPECT_TRUE(SendMessage(client_, request).ok());
    return Receive(timeout_ms);
  }
  // The next reply on the raw socket (the tests also send it garbage).
  Message Receive(int timeout_ms = 10'000) {
    client_.set(zmq::sockopt::rcvtimeo, timeout_ms);
    auto reply = RecvMessage(client_);
    EXPECT_TRUE(reply.ok()) << "no reply within " << timeout_ms << " ms: " << reply.status();
    return reply.ok() ? *reply : Message{};
  }
  proto::VersionListReply List(uint64_t after) {
    proto::VersionListRequest body;
    body.set_after_version(after);
    Message reply = Call(proto::VERSION_LIST, body.SerializeAsString());
    EXPECT_EQ(reply.header.status_code(), 0) << reply.header.status_message();
    proto::VersionListReply list;
    EXPECT_TRUE(list.ParseFromString(reply.header.payload()));
    return list;
  }
  Message Fetch(uint64_t version, const std::string& path, uint64_t offset, uint64_t length) {
    proto::VersionFetchRequest body;
    body.set_version(version);
    body.set_path(path);
    body.set_offset(offset);
    body.set_length(length);
    return Call(proto::VERSION_FETCH, body.SerializeAsString());
  }

  TempDir root_;
  TestModel model_;
  std::vector<uint64_t> keys_ = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  zmq::context_t context_;
  zmq::socket_t client_{context_, zmq::socket_type::dealer};
  std::unique_ptr<VersionService> service_;
  std::jthread thread_;
  uint64_t id_ = 0;
};

TEST_F(VersionServiceTest, ListsAndFetchesCommittedVersionsInChunks) {
  testing::WriteVersion(root_.path(), model_, 1, 0, testing::UniformContent(model_, keys_, 1));
  testing::WriteVersion(root_.path(), model_, 2, 1, testing::UniformContent(model_, {3}, 2));
  // An uncommitted version (a writer's temporary directory) is never listed.
  auto pending = VersionWriter::Begin(root_.path(), 3, 0, true, proto::Manifest::ENCODING_FLOAT32,
                                      {.sync = false});
  ASSERT_TRUE(pending.ok());
  Start(/*chunk_bytes=*/64);

  proto::VersionListReply list = List(0);
  ASSERT_EQ(list.versions_size(), 2);
  EXPECT_EQ(list.newest_version(), 2u);
  EXPECT_EQ(list.versions(0).version(), 1u);
  EXPECT_EQ(list.versions(1).version(), 2u);
  const std::string dir1 = root_.path() + "/" + VersionDirName(1);
  EXPECT_EQ(list.versions(0).manifest(), ReadAll(dir1 + "/manifest.pb"));
  EXPECT_EQ(List(1).versions_size(), 1);
  EXPECT_EQ(List(2).versions_size(), 0);

  proto::Manifest manifest;
  ASSERT_TRUE(manifest.ParseFromString(list.versions(0).manifest()));
  ASSERT_GT(manifest.files_size(), 0);
  for (const auto& file : manifest.files()) {
    std::string bytes;
    while (bytes.size() < file.bytes()) {
      Message reply = Fetch(1, file.path(), bytes.size(), 64);
      ASSERT_EQ(reply.header.status_code(), 0) << reply.header.status_message();
      proto::VersionFetchReply info;
      ASSERT_TRUE(info.ParseFromString(reply.header.payload()));
      ASSERT_GT(reply.values.size(), 0u);
      ASSERT_LE(reply.values.size(), 64u);
      EXPECT_EQ(info.file_bytes(), file.bytes());
      EXPECT_EQ(info.crc32c(),
                Crc32c(std::span<const std::byte>(reply.values.data(), reply.values.size())));
      bytes.append(reinterpret_cast<const char*>(reply.values.data()), reply.values.size());
    }
    EXPECT_EQ(bytes, ReadAll(dir1 + "/" + file.path()));
    EXPECT_EQ(Crc32c(bytes), file.crc32c());
  }
  EXPECT_GT(service_->stats().bytes_sent, 0u);
  pending->Abort();
}

TEST_F(VersionServiceTest, WatchIsAnsweredOnCommitOrAtTimeout) {
  testing::WriteVersion(root_.path(), model_, 1, 0, testing::UniformContent(model_, keys_, 1));
  Start();
  // Nothing newer: answered empty at the timeout.
  proto::VersionWatchRequest watch;
  watch.set_after_version(1);
  watch.set_timeout_ms(50);
  Message reply = Call(proto::VERSION_WATCH, watch.SerializeAsString());
  proto::VersionListReply list;
  ASSERT_TRUE(list.ParseFromString(reply.header.payload()));
  EXPECT_EQ(list.versions_size(), 0);

  // A long watch is answered as soon as version 2 is committed and announced.
  watch.set_timeout_ms(60'000);
  Message request{MakeHeader(proto::VERSION_WATCH, ++id_), {}, {}};
  request.header.set_payload(watch.SerializeAsString());
  ASSERT_TRUE(SendMessage(client_, request).ok());
  // Whether the watch arrives before or after the commit, it is answered with v2.
  testing::WriteVersion(root_.path(), model_, 2, 1, testing::UniformContent(model_, {3}, 2));
  const auto start = SteadyClock::now();
  service_->Notify();
  reply = Receive(30'000);
  EXPECT_LT(SteadyClock::now() - start, std::chrono::seconds(20));
  ASSERT_TRUE(list.ParseFromString(reply.header.payload()));
  ASSERT_EQ(list.versions_size(), 1);
  EXPECT_EQ(list.versions(0).version(), 2u);
}

TEST_F(VersionServiceTest, RefusesGarbageAndTraversalAndKeepsServing) {
  testing::WriteVersion(root_.path(), model_, 1, 0, testing::UniformContent(model_, keys_, 1));
  std::ofstream(root_.path() + "/secret") << "not a version file";
  Start(/*chunk_bytes=*/64);
  // Frames that are not a message at all.
  client_.send(zmq::str_buffer("garbage"), zmq::send_flags::none);
  Message reply = Receive();
  EXPECT_NE(reply.header.status_code(), 0);
  // A header that does not parse.
  client_.send(zmq::str_buffer("\xff\xff\xff"), zmq::send_flags::sndmore);
  client_.send(zmq::message_t(), zmq::send_flags::sndmore);
  client_.send(zmq::message_t(), zmq::send_flags::none);
  reply = Receive();
  EXPECT_NE(reply.header.status_code(), 0);
  // Bad payload, traversal, unknown version / file, oversized chunk, wrong type.
  EXPECT_NE(Call(proto::VERSION_FETCH, "\xff\xff").header.status_code(), 0);
  for (const std::string path : {"../secret", "..", "/etc/passwd", "a/b", ""}) {
    EXPECT_EQ(Fetch(1, path, 0, 10).header.status_code(),
              static_cast<int>(StatusCode::kInvalidArgument))
        << path;
  }
  EXPECT_EQ(Fetch(7, "manifest.pb", 0, 10).header.status_code(),
            static_cast<int>(StatusCode::kNotFound));
  EXPECT_EQ(Fetch(1, "nope.bin", 0, 10).header.status_code(),
            static_cast<int>(StatusCode::kNotFound));
  EXPECT_EQ(Fetch(1, "manifest.pb", 0, 65).header.status_code(),
            static_cast<int>(StatusCode::kInvalidArgument));
  EXPECT_EQ(Fetch(1, "manifest.pb", 1 << 30, 10).header.status_code(),
            static_cast<int>(StatusCode::kOutOfRange));
  EXPECT_NE(Call(proto::PUSH, "").header.status_code(), 0);
  EXPECT_GE(service_->stats().errors, 12u);
  // Still serving.
  EXPECT_EQ(List(0).versions_size(), 1);
  Message ok = Fetch(1, "manifest.pb", 0, 10);
  EXPECT_EQ(ok.header.status_code(), 0);
  EXPECT_EQ(ok.values.size(), 10u);
}

}  // namespace
}  // namespace eddy::model_store
