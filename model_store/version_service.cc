#include "model_store/version_service.h"

#include <fcntl.h>
#include <glog/logging.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "common/event_loop.h"
#include "common/proto/serving.pb.h"
#include "model_store/crc32c.h"
#include "model_store/version_dir.h"
#include "model_store/version_reader.h"

namespace eddy::model_store {
namespace {

constexpr int64_t kMaxRequestBytes = 1 << 20;  // requests are small protobufs
constexpr uint32_t kMaxWatchMs = 60'000;

StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError("cannot open " + path);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return DataLossError("cannot read " + path);
  return bytes;
}

// A file name inside a version directory: one plain component, no traversal.
bool SafeFileName(const std::string& path) {
  return !path.empty() && path.size() < 256 && path.find('/') == std::string::npos &&
         path.find('\\') == std::string::npos && path.find('\0') == std::string::npos &&
         path != "." && path != "..";
}

}  // namespace

VersionService::VersionService(zmq::context_t& context, VersionServiceOptions options)
    : context_(context), options_(std::move(options)) {}

VersionService::~VersionService() = default;

StatusOr<std::string> VersionService::Bind() {
  if (options_.root.empty()) return InvalidArgumentError("VersionService: root is empty");
  if (options_.chunk_bytes == 0 || options_.chunk_bytes > (uint64_t{256} << 20)) {
    return InvalidArgumentError("VersionService: chunk_bytes must be in [1, 256 MiB]");
  }
  if (socket_ != nullptr) return FailedPreconditionError("VersionService: already bound");
  try {
    socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::router);
  } catch (const zmq::error_t& e) {
    return UnavailableError(std::string("VersionService: cannot create socket: ") + e.what());
  }
  ConfigureSocket(*socket_, /*linger_ms=*/0, kMaxRequestBytes);
  socket_->set(zmq::sockopt::router_mandatory, 0);
  return BindTcp(*socket_, options_.bind_host, options_.port);
}

void VersionService::Stop() {
  stop_.store(true);
  waker_.Notify();
}

void VersionService::Notify() {
  notified_.store(true);
  waker_.Notify();
}

VersionServiceStats VersionService::stats() const {
  return {requests_.load(), bytes_sent_.load(), errors_.load()};
}

void VersionService::Rescan() {
  next_scan_ = SteadyClock::now() + options_.scan_interval;
  StatusOr<std::vector<uint64_t>> listed = ListVersions(options_.root);
  if (!listed.ok()) {
    // The root may not exist yet (nothing exported): serve nothing.
    versions_.clear();
    return;
  }
  std::map<uint64_t, Committed> next;
  for (uint64_t v : *listed) {
    auto it = versions_.find(v);
    if (it != versions_.end()) {
      next.emplace(v, std::move(it->second));
      continue;
    }
    const std::string dir = options_.root + "/" + VersionDirName(v);
    StatusOr<VersionReader> reader = VersionReader::Open(dir);
    StatusOr<std::string> bytes = ReadFile(dir + "/manifest.pb");
    if (!reader.ok() || !bytes.ok()) {
      if (!unreadable_[v]) {
        unreadable_[v] = true;
        LOG(WARNING) << "version service: skipping " << dir << ": "
                     << (reader.ok() ? bytes.status() : reader.status());
      }
      continue;
    }
    next.emplace(v, Committed{std::move(bytes).value(), reader->manifest()});
  }
  versions_ = std::move(next);
}

Status VersionService::Run() {
  if (socket_ == nullptr) return FailedPreconditionError("VersionService::Run before Bind");
  Rescan();
  // Rescans when notified or due; watchers hear at once of a new version.
  auto maybe_rescan = [this] {
    const uint64_t newest_before = versions_.empty() ? 0 : versions_.rbegin()->first;
    if (notified_.exchange(false) || SteadyClock::now() >= next_scan_) Rescan();
    const uint64_t newest = versions_.empty() ? 0 : versions_.rbegin()->first;
    if (newest != newest_before) AnswerWatchers();
  };
  EventLoop loop;
  loop.AddWaker(waker_, [&] {
    if (stop_.load()) return loop.Exit(OkStatus());
    maybe_rescan();
  });
  std::string routing_id;
  loop.AddSocket(
      *socket_,
      [&] {
        routing_id.clear();
        StatusOr<Message> request = RecvMessage(*socket_, &routing_id);
        if (!request.ok()) {
          uint64_t n = errors_.fetch_add(1) + 1;
          if (n <= 10 || n % 1000 == 0) {
            LOG(WARNING) << "version service: bad message (" << n
                         << " errors so far): " << request.status();
          }
          if (!routing_id.empty()) ReplyError(routing_id, 0, request.status());
        } else {
          Dispatch(routing_id, *request);
        }
      },
      /*max_per_round=*/64);
  loop.AddTicker([&](SteadyClock::time_point) -> StatusOr<SteadyClock::time_point> {
    if (stop_.load()) {
      loop.Exit(OkStatus());
      return EventLoop::kNever;
    }
    maybe_rescan();
    AnswerWatchers();
    SteadyClock::time_point deadline = next_scan_;
    for (const Watcher& w : watchers_) deadline = std::min(deadline, w.deadline);
    return deadline;
  });
  Status ended = loop.Run();
  if (!ended.ok()) return ended.WithContext("version service");
  // Pending watchers get an empty answer rather than silence.
  for (const Watcher& w : watchers_) ReplyVersions(w.routing_id, w.request_id, UINT64_MAX);
  watchers_.clear();
  return OkStatus();
}

void VersionService::Dispatch(const std::string& routing_id, const Message& request) {
  switch (request.header.type()) {
    case proto::VERSION_LIST:
      HandleList(routing_id, request);
      return;
    case proto::VERSION_FETCH:
      HandleFetch(routing_id, request);
      return;
    case proto::VERSION_WATCH:
      HandleWatch(routing_id, request);
      return;
    default:
      ReplyError(routing_id, request.header.request_id(),
                 InvalidArgumentError("version service: unexpected message type " +
                                      std::string(MsgTypeName(request.header.type()))));
  }
}

void VersionService::HandleList(const std::string& routing_id, const Message& request) {
  proto::VersionListRequest body;
  if (!body.ParseFromString(request.header.payload())) {
    ReplyError(routing_id, request.header.request_id(),
               InvalidArgumentError("VERSION_LIST: payload does not parse"));
    return;
  }
  requests_.fetch_add(1);
  ReplyVersions(routing_id, request.header.request_id(), body.after_version());
}

void VersionService::HandleWatch(const std::string& routing_id, const Message& request) {
  proto::VersionWatchRequest body;
  if (!body.ParseFromString(request.header.payload())) {
    ReplyError(routing_id, request.header.request_id(),
               InvalidArgumentError("VERSION_WATCH: payload does not parse"));
    return;
  }
  requests_.fetch_add(1);
  const uint64_t newest = versions_.empty() ? 0 : versions_.rbegin()->first;
  if (newest > body.after_version() || body.timeout_ms() == 0) {
    ReplyVersions(routing_id, request.header.request_id(), body.after_version());
    return;
  }
  const auto timeout = std::chrono::milliseconds(std::min(body.timeout_ms(), kMaxWatchMs));
  watchers_.push_back({routing_id, request.header.request_id(), body.after_version(),
                       SteadyClock::now() + timeout});
}

void VersionService::AnswerWatchers() {
  const auto now = SteadyClock::now();
  const uint64_t newest = versions_.empty() ? 0 : versions_.rbegin()->first;
  std::vector<Watcher> waiting;
  for (Watcher& w : watchers_) {
    if (newest > w.after_version) {
      ReplyVersions(w.routing_id, w.request_id, w.after_version);
    } else if (now >= w.deadline) {
      ReplyVersions(w.routing_id, w.request_id, UINT64_MAX);  // timed out: nothing new
    } else {
      waiting.push_back(std::move(w));
    }
  }
  watchers_ = std::move(waiting);
}

void VersionService::HandleFetch(const std::string& routing_id, const Message& request) {
  const uint64_t request_id = request.header.request_id();
  proto::VersionFetchRequest body;
  if (!body.ParseFromString(request.header.payload())) {
    ReplyError(routing_id, request_id,
               InvalidArgumentError("VERSION_FETCH: payload does not parse"));
    return;
  }
  auto it = versions_.find(body.version());
  if (it == versions_.end()) {
    ReplyError(routing_id, request_id,
               NotFoundError("VERSION_FETCH: version " + std::to_string(body.version()) +
                             " is not committed here"));
    return;
  }
  if (!SafeFileName(body.path())) {
    ReplyError(routing_id, request_id,
               InvalidArgumentError("VERSION_FETCH: bad path '" + body.path().substr(0, 64) +
                                    "' (one file name of the version, no '/' or '..')"));
    return;
  }
  bool known = body.path() == "manifest.pb";
  for (const FileEntry& f : it->second.manifest.files()) known = known || f.path() == body.path();
  if (!known) {
    ReplyError(routing_id, request_id,
               NotFoundError("VERSION_FETCH: version " + std::to_string(body.version()) +
                             " has no file '" + body.path() + "'"));
    return;
  }
  const uint64_t length = body.length() == 0 ? options_.chunk_bytes : body.length();
  if (length > options_.chunk_bytes) {
    ReplyError(
        routing_id, request_id,
        InvalidArgumentError("VERSION_FETCH: length " + std::to_string(length) +
                             " exceeds the chunk size " + std::to_string(options_.chunk_bytes)));
    return;
  }
  const std::string path = options_.root + "/" + VersionDirName(body.version()) + "/" + body.path();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    // Deleted by retention since the last scan, for example.
    ReplyError(routing_id, request_id,
               NotFoundError("VERSION_FETCH: cannot open " + path + ": " + std::strerror(errno)));
    return;
  }
  const off_t size = ::lseek(fd, 0, SEEK_END);
  if (size < 0 || body.offset() > static_cast<uint64_t>(size)) {
    ::close(fd);
    ReplyError(routing_id, request_id,
               OutOfRangeError("VERSION_FETCH: offset " + std::to_string(body.offset()) +
                               " beyond the end of " + body.path()));
    return;
  }
  const uint64_t n = std::min<uint64_t>(length, static_cast<uint64_t>(size) - body.offset());
  Buffer chunk = Buffer::AllocateUninitialized(n);
  uint64_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, chunk.mutable_data() + done, n - done,
                        static_cast<off_t>(body.offset() + done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    done += static_cast<uint64_t>(r);
  }
  ::close(fd);
  if (done != n) {
    ReplyError(routing_id, request_id, DataLossError("VERSION_FETCH: short read of " + path));
    return;
  }
  proto::VersionFetchReply reply_body;
  reply_body.set_version(body.version());
  reply_body.set_path(body.path());
  reply_body.set_offset(body.offset());
  reply_body.set_file_bytes(static_cast<uint64_t>(size));
  reply_body.set_crc32c(Crc32c(std::span<const std::byte>(chunk.data(), chunk.size())));
  Message reply{MakeHeader(proto::REPLY, request_id), {}, std::move(chunk)};
  reply.header.set_version(static_cast<int64_t>(body.version()));
  reply.header.set_value_count(n);
  reply.header.set_payload(reply_body.SerializeAsString());
  requests_.fetch_add(1);
  bytes_sent_.fetch_add(n);
  Send(routing_id, reply);
}

void VersionService::ReplyVersions(const std::string& routing_id, uint64_t request_id,
                                   uint64_t after_version) {
  proto::VersionListReply body;
  body.set_newest_version(versions_.empty() ? 0 : versions_.rbegin()->first);
  for (auto it = versions_.upper_bound(after_version); it != versions_.end(); ++it) {
    proto::VersionEntry* e = body.add_versions();
    e->set_version(it->first);
    e->set_manifest(it->second.manifest_bytes);
  }
  Message reply{MakeHeader(proto::REPLY, request_id), {}, {}};
  reply.header.set_version(static_cast<int64_t>(body.newest_version()));
  reply.header.set_payload(body.SerializeAsString());
  Send(routing_id, reply);
}

void VersionService::ReplyError(const std::string& routing_id, uint64_t request_id,
                                const Status& status) {
  uint64_t n = errors_.fetch_add(1) + 1;
  if (n <= 10 || n % 1000 == 0) {
    LOG(WARNING) << "version service: refused a request (" << n << " errors so far): " << status;
  }
  Message reply{MakeHeader(proto::REPLY, request_id), {}, {}};
  SetStatus(status, &reply.header);
  Send(routing_id, reply);
}

void VersionService::Send(const std::string& routing_id, const Message& reply) {
  Status s = SendMessage(*socket_, reply, routing_id, /*dont_wait=*/true);
  if (!s.ok()) LOG(WARNING) << "version service: reply not sent: " << s;
}

}  // namespace eddy::model_store
