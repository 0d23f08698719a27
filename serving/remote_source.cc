#include <algorithm>
#include <filesystem>
#include <fstream>
#include <span>

#include "common/message.h"
#include "common/proto/serving.pb.h"
#include "common/rpc_client.h"
#include "model_store/crc32c.h"
#include "model_store/format.h"
#include "model_store/version_dir.h"
#include "serving/version_source.h"

namespace eddy::serving {
namespace {

namespace fs = std::filesystem;

bool SafeFileName(const std::string& path) {
  return !path.empty() && path.size() < 256 && path.find('/') == std::string::npos &&
         path.find('\0') == std::string::npos && path != "." && path != ".." &&
         path != "manifest.pb";
}

// Versions fetched in chunks from a VersionService into the cache directory.
class RemoteSource : public VersionSource {
 public:
  RemoteSource(zmq::context_t& context, const ReplicaOptions& options, Waker& waker,
               const std::atomic<bool>& stop)
      : rpc_(context,
             {.linger_ms = 0,
              .max_message_bytes = static_cast<int64_t>(options.fetch_chunk_bytes) + (1 << 20)}),
        options_(options),
        waker_(waker),
        stop_(stop) {}

  Status Connect() {
    const ConnectionLabel label{NodeRole::kReplica, -1, NodeRole::kVersionService, -1,
                                ConnectionPurpose::kData};
    return rpc_.Connect(options_.version_endpoint, options_.transport, label);
  }

  StatusOr<std::vector<VersionEntry>> List(uint64_t after) override {
    proto::VersionListRequest body;
    body.set_after_version(after);
    ASSIGN_OR_RETURN(Message reply, Call(proto::VERSION_LIST, body.SerializeAsString(),
                                         options_.rpc_timeout, /*interruptible=*/false));
    return Entries(reply);
  }

  StatusOr<std::vector<VersionEntry>> Watch(uint64_t after,
                                            std::chrono::milliseconds timeout) override {
    proto::VersionWatchRequest body;
    body.set_after_version(after);
    body.set_timeout_ms(static_cast<uint32_t>(timeout.count()));
    StatusOr<Message> reply = Call(proto::VERSION_WATCH, body.SerializeAsString(),
                                   timeout + options_.rpc_timeout, /*interruptible=*/true);
    if (reply.status().code() == StatusCode::kCancelled && !stop_.load()) {
      return std::vector<VersionEntry>();  // woken: a pin request
    }
    if (!reply.ok()) return reply.status();
    return Entries(*reply);
  }

  StatusOr<std::string> Fetch(const VersionEntry& entry) override {
    const uint64_t v = entry.manifest.version();
    const std::string dir = options_.cache_dir + "/" + model_store::VersionDirName(v);
    std::error_code ec;
    if (fs::exists(dir + "/manifest.pb", ec)) return dir;  // fetched before; verified by the caller
    const std::string tmp = options_.cache_dir + "/.fetch-" + model_store::VersionDirName(v);
    fs::remove_all(tmp, ec);
    fs::create_directories(tmp, ec);
    if (ec) return UnavailableError("cannot create " + tmp + ": " + ec.message());
    Status s = FetchInto(entry, tmp);
    if (s.ok()) {
      fs::rename(tmp, dir, ec);
      if (ec) s = UnavailableError("cannot rename " + tmp + " to " + dir + ": " + ec.message());
    }
    if (!s.ok()) {
      fs::remove_all(tmp, ec);
      return s;
    }
    return dir;
  }

  void Discard(uint64_t version) override {
    std::error_code ec;
    fs::remove_all(options_.cache_dir + "/" + model_store::VersionDirName(version), ec);
  }

  void Prune(uint64_t full) override {
    StatusOr<std::vector<uint64_t>> cached = model_store::ListVersions(options_.cache_dir);
    if (!cached.ok()) return;
    for (uint64_t v : *cached) {
      if (v < full) Discard(v);  // a pin of an older version fetches it again
    }
  }

 private:
  Status FetchInto(const VersionEntry& entry, const std::string& tmp) {
    const uint64_t v = entry.manifest.version();
    {
      std::ofstream out(tmp + "/manifest.pb", std::ios::binary | std::ios::trunc);
      out.write(entry.manifest_bytes.data(),
                static_cast<std::streamsize>(entry.manifest_bytes.size()));
      if (!out.good()) return UnavailableError("cannot write " + tmp + "/manifest.pb");
    }
    for (const model_store::FileEntry& file : entry.manifest.files()) {
      if (!SafeFileName(file.path())) {
        return DataLossError("version " + std::to_string(v) + ": bad file name '" + file.path() +
                             "' in the manifest");
      }
      const std::string path = tmp + "/" + file.path();
      std::ofstream out(path, std::ios::binary | std::ios::trunc);
      if (!out) return UnavailableError("cannot create " + path);
      uint64_t offset = 0;
      while (offset < file.bytes()) {
        if (stop_.load()) return CancelledError("replica stopping");
        proto::VersionFetchRequest body;
        body.set_version(v);
        body.set_path(file.path());
        body.set_offset(offset);
        body.set_length(std::min<uint64_t>(options_.fetch_chunk_bytes, file.bytes() - offset));
        ASSIGN_OR_RETURN(Message reply, Call(proto::VERSION_FETCH, body.SerializeAsString(),
                                             options_.rpc_timeout, /*interruptible=*/false));
        proto::VersionFetchReply info;
        if (!info.ParseFromString(reply.header.payload())) {
          return DataLossError("VERSION_FETCH reply does not parse");
        }
        const std::string where = "version " + std::to_string(v) + " file " + file.path() + " at " +
                                  std::to_string(offset);
        if (info.file_bytes() != file.bytes()) {
          return DataLossError(where + ": the service has " + std::to_string(info.file_bytes()) +
                               " bytes, the manifest says " + std::to_string(file.bytes()));
        }
        const auto chunk = std::span<const std::byte>(reply.values.data(), reply.values.size());
        if (info.offset() != offset || chunk.empty() || chunk.size() > body.length()) {
          return DataLossError(where + ": unexpected chunk of " + std::to_string(chunk.size()) +
                               " bytes at " + std::to_string(info.offset()));
        }
        if (model_store::Crc32c(chunk) != info.crc32c()) {
          return DataLossError(where + ": chunk checksum mismatch (corrupted in transit)");
        }
        out.write(reinterpret_cast<const char*>(chunk.data()),
                  static_cast<std::streamsize>(chunk.size()));
        if (!out.good()) return UnavailableError("cannot write " + path);
        offset += chunk.size();
      }
    }
    return OkStatus();
  }

  StatusOr<std::vector<VersionEntry>> Entries(const Message& reply) {
    proto::VersionListReply body;
    if (!body.ParseFromString(reply.header.payload())) {
      return DataLossError("version list reply does not parse");
    }
    std::vector<VersionEntry> out;
    for (const proto::VersionEntry& e : body.versions()) {
      VersionEntry entry;
      entry.manifest_bytes = e.manifest();
      if (!entry.manifest.ParseFromString(e.manifest())) {
        return DataLossError("manifest of version " + std::to_string(e.version()) +
                             " does not parse");
      }
      entry.manifest.set_version(e.version());
      out.push_back(std::move(entry));
    }
    return out;
  }

  // Sends one request and waits for its reply (replies to older requests are
  // dropped). Stop cancels the call; `interruptible`: any wake-up of the loader
  // also ends it, with Cancelled.
  StatusOr<Message> Call(proto::MsgType type, std::string payload,
                         std::chrono::milliseconds timeout, bool interruptible) {
    if (stop_.load()) return CancelledError("replica stopping");
    Message request{MakeHeader(type), {}, {}};
    request.header.set_payload(std::move(payload));
    RpcInterrupt interrupt{.waker = &waker_, .ends_call = {}};
    // Pins wait for this call; only Stop ends it.
    if (!interruptible) interrupt.ends_call = [this] { return stop_.load(); };
    return rpc_.Call(std::move(request), timeout, interrupt);
  }

  RpcClient rpc_;
  const ReplicaOptions& options_;
  Waker& waker_;
  const std::atomic<bool>& stop_;
};

}  // namespace

StatusOr<std::unique_ptr<VersionSource>> ConnectRemoteSource(zmq::context_t& context,
                                                             const ReplicaOptions& options,
                                                             Waker& waker,
                                                             const std::atomic<bool>& stop) {
  auto source = std::make_unique<RemoteSource>(context, options, waker, stop);
  RETURN_IF_ERROR(source->Connect());
  return std::unique_ptr<VersionSource>(std::move(source));
}

}  // namespace eddy::serving
