#include "serving/replica.h"

#include <glog/logging.h>
#include <poll.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <thread>

#include "common/message.h"
#include "common/transport.h"
#include "model_store/crc32c.h"
#include "model_store/model_format.h"

namespace eddy::serving {
namespace {

namespace fs = std::filesystem;

double Seconds(SteadyClock::duration d) { return std::chrono::duration<double>(d).count(); }

// Waits until `fd` is readable or `timeout` passes; returns whether it is readable.
bool WaitReadable(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, timeout.count())));
  return n > 0 && (p.revents & POLLIN);
}

bool SafeFileName(const std::string& path) {
  return !path.empty() && path.size() < 256 && path.find('/') == std::string::npos &&
         path.find('\0') == std::string::npos && path != "." && path != ".." &&
         path != "manifest.pb";
}

}  // namespace

// A version as announced by the source.
struct Replica::Entry {
  proto::Manifest manifest;
  std::string manifest_bytes;
};

// Where versions come from. Used by the loader thread only.
class Replica::Source {
 public:
  virtual ~Source() = default;
  // Committed versions newer than `after`, ascending.
  virtual StatusOr<std::vector<Entry>> List(uint64_t after) = 0;
  // As List, but waits up to `timeout` for one; empty when none came or the
  // loader was woken (Stop, pin request).
  virtual StatusOr<std::vector<Entry>> Watch(uint64_t after, std::chrono::milliseconds timeout) = 0;
  // A local directory holding the whole version (fetched if needed), not yet verified.
  virtual StatusOr<std::string> Fetch(const Entry& entry) = 0;
  // Forgets a local copy that failed verification.
  virtual void Discard(uint64_t version) { (void)version; }
  // Full version `full` is loaded: local copies of older versions may go.
  virtual void Prune(uint64_t full) { (void)full; }
};

// Versions read in place from a root directory.
class Replica::LocalSource : public Replica::Source {
 public:
  LocalSource(std::string root, std::chrono::milliseconds scan_interval, Waker& waker)
      : root_(std::move(root)), scan_interval_(scan_interval), waker_(waker) {}

  StatusOr<std::vector<Entry>> List(uint64_t after) override {
    ASSIGN_OR_RETURN(std::vector<uint64_t> versions, model_store::ListVersions(root_));
    std::vector<Entry> out;
    for (uint64_t v : versions) {
      if (v <= after) continue;
      const std::string path = root_ + "/" + model_store::VersionDirName(v) + "/manifest.pb";
      std::ifstream in(path, std::ios::binary);
      Entry e;
      e.manifest_bytes.assign(std::istreambuf_iterator<char>(in), {});
      if (!in.good() && !in.eof()) continue;
      if (!e.manifest.ParseFromString(e.manifest_bytes)) {
        // Handed to Follow anyway, which refuses it with the reader's error.
        e.manifest.set_version(v);
      }
      e.manifest.set_version(v);
      out.push_back(std::move(e));
    }
    return out;
  }

  StatusOr<std::vector<Entry>> Watch(uint64_t after, std::chrono::milliseconds timeout) override {
    const auto deadline = SteadyClock::now() + timeout;
    while (true) {
      StatusOr<std::vector<Entry>> got = List(after);
      if (!got.ok() || !got->empty()) return got;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
      if (left.count() <= 0) return got;
      if (WaitReadable(waker_.fd(), std::min(left, scan_interval_))) {
        waker_.Drain();
        return std::vector<Entry>();
      }
    }
  }

  StatusOr<std::string> Fetch(const Entry& entry) override {
    return root_ + "/" + model_store::VersionDirName(entry.manifest.version());
  }

 private:
  const std::string root_;
  const std::chrono::milliseconds scan_interval_;
  Waker& waker_;  // the replica's loader waker
};

// Versions fetched in chunks from a VersionService into the cache directory.
class Replica::RemoteSource : public Replica::Source {
 public:
  RemoteSource(zmq::context_t& context, const ReplicaOptions& options, Waker& waker,
               const std::atomic<bool>& stop)
      : socket_(context, zmq::socket_type::dealer), options_(options), waker_(waker), stop_(stop) {
    ConfigureSocket(socket_, 0, static_cast<int64_t>(options.fetch_chunk_bytes) + (1 << 20));
  }

  Status Connect() {
    const ConnectionLabel label{NodeRole::kReplica, -1, NodeRole::kVersionService, -1,
                                ConnectionPurpose::kData};
    return ConnectVia(options_.transport, socket_, options_.version_endpoint, label);
  }

  StatusOr<std::vector<Entry>> List(uint64_t after) override {
    proto::VersionListRequest body;
    body.set_after_version(after);
    ASSIGN_OR_RETURN(Message reply, Call(proto::VERSION_LIST, body.SerializeAsString(),
                                         options_.rpc_timeout, /*interruptible=*/false));
    return Entries(reply);
  }

  StatusOr<std::vector<Entry>> Watch(uint64_t after, std::chrono::milliseconds timeout) override {
    proto::VersionWatchRequest body;
    body.set_after_version(after);
    body.set_timeout_ms(static_cast<uint32_t>(timeout.count()));
    ASSIGN_OR_RETURN(Message reply, Call(proto::VERSION_WATCH, body.SerializeAsString(),
                                         timeout + options_.rpc_timeout, /*interruptible=*/true));
    if (reply.header.type() == proto::MSG_UNKNOWN) return std::vector<Entry>();  // woken
    return Entries(reply);
  }

  StatusOr<std::string> Fetch(const Entry& entry) override {
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
  Status FetchInto(const Entry& entry, const std::string& tmp) {
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

  StatusOr<std::vector<Entry>> Entries(const Message& reply) {
    proto::VersionListReply body;
    if (!body.ParseFromString(reply.header.payload())) {
      return DataLossError("version list reply does not parse");
    }
    std::vector<Entry> out;
    for (const proto::VersionEntry& e : body.versions()) {
      Entry entry;
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
  // dropped). `interruptible`: the loader waker ends the wait early with a
  // MSG_UNKNOWN message.
  StatusOr<Message> Call(proto::MsgType type, std::string payload,
                         std::chrono::milliseconds timeout, bool interruptible) {
    const uint64_t id = ++next_id_;
    Message request{MakeHeader(type, id), {}, {}};
    request.header.set_payload(std::move(payload));
    RETURN_IF_ERROR(SendMessage(socket_, request));
    const auto deadline = SteadyClock::now() + timeout;
    while (true) {
      if (stop_.load()) return CancelledError("replica stopping");
      zmq::pollitem_t items[2] = {{socket_.handle(), 0, ZMQ_POLLIN, 0},
                                  {nullptr, waker_.fd(), ZMQ_POLLIN, 0}};
      try {
        zmq::poll(items, 2, std::chrono::milliseconds(PollTimeoutMs(deadline, 1000)));
      } catch (const zmq::error_t& e) {
        return UnavailableError(std::string("poll failed: ") + e.what());
      }
      if (items[1].revents & ZMQ_POLLIN) {
        waker_.Drain();
        if (interruptible) return Message{MakeHeader(proto::MSG_UNKNOWN), {}, {}};
        continue;  // pins wait for this call; Stop is checked above
      }
      if (items[0].revents & ZMQ_POLLIN) {
        StatusOr<Message> reply = RecvMessage(socket_);
        if (!reply.ok()) return reply.status();
        if (reply->header.request_id() != id) continue;  // a stale (interrupted) reply
        RETURN_IF_ERROR(StatusFromHeader(reply->header));
        return reply;
      }
      if (SteadyClock::now() >= deadline) {
        return DeadlineExceededError(std::string(MsgTypeName(type)) + " to " +
                                     options_.version_endpoint + ": no answer in " +
                                     std::to_string(timeout.count()) + " ms");
      }
    }
  }

  zmq::socket_t socket_;
  const ReplicaOptions& options_;
  Waker& waker_;
  const std::atomic<bool>& stop_;
  uint64_t next_id_ = 0;
};

struct Replica::Request {
  std::vector<std::string> envelope;  // routing id (+ empty delimiter from REQ peers)
  proto::Header header;
};

Replica::Replica(zmq::context_t& context, ReplicaOptions options)
    : context_(context), options_(std::move(options)) {}

Replica::~Replica() { Stop(); }

StatusOr<std::string> Replica::Bind() {
  if (options_.version_endpoint.empty() == options_.model_dir.empty()) {
    return InvalidArgumentError("replica: give exactly one of a version endpoint and a model dir");
  }
  if (!options_.version_endpoint.empty() && options_.cache_dir.empty()) {
    return InvalidArgumentError("replica: a cache directory is required with a version endpoint");
  }
  if (options_.max_versions_cached < 1) {
    return InvalidArgumentError("replica: max_versions_cached must be >= 1");
  }
  if (socket_ != nullptr) return FailedPreconditionError("replica: already bound");
  socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::router);
  ConfigureSocket(*socket_, 0, 64 << 20);
  return BindTcp(*socket_, options_.bind_host, options_.port);
}

void Replica::Stop() {
  stop_.store(true);
  io_waker_.Notify();
  loader_waker_.Notify();
  MutexLock lock(&mu_);
  changed_.NotifyAll();
}

std::shared_ptr<const LoadedModel> Replica::serving() const {
  MutexLock lock(&mu_);
  return serving_;
}

proto::ServeStatus Replica::StatusLocked() const {
  proto::ServeStatus s = counters_;
  s.set_current_version(serving_ == nullptr ? 0 : serving_->version());
  s.set_pinned_version(pinned_);
  s.set_newest_version(newest_version_);
  for (const auto& [v, m] : cache_) s.add_cached_versions(v);
  return s;
}

proto::ServeStatus Replica::status() const {
  MutexLock lock(&mu_);
  return StatusLocked();
}

bool Replica::WaitFor(const std::function<bool(const proto::ServeStatus&)>& pred,
                      std::chrono::milliseconds timeout) const {
  const auto deadline = SteadyClock::now() + timeout;
  MutexLock lock(&mu_);
  while (!pred(StatusLocked())) {
    if (!changed_.WaitUntil(&mu_, deadline)) return pred(StatusLocked());
  }
  return true;
}

// ---------------------------------------------------------------------------
// Loader thread.

void Replica::LoaderMain() {
  std::unique_ptr<Source> source;
  if (!options_.model_dir.empty()) {
    source =
        std::make_unique<LocalSource>(options_.model_dir, options_.scan_interval, loader_waker_);
  } else {
    auto remote = std::make_unique<RemoteSource>(context_, options_, loader_waker_, stop_);
    Status s = remote->Connect();
    if (!s.ok()) {
      Refuse(0, s);
      return;
    }
    source = std::move(remote);
  }
  uint64_t seen = 0;  // newest version examined (loaded or refused)
  bool first = true;
  int failures = 0;
  while (!stopping()) {
    std::deque<PendingPin> pins;
    {
      MutexLock lock(&mu_);
      pins.swap(pins_);
    }
    for (PendingPin& pin : pins) {
      Status s = LoadPinned(*source, pin.version);
      if (!s.ok()) LOG(ERROR) << "replica: cannot pin version " << pin.version << ": " << s;
      {
        MutexLock lock(&mu_);
        done_.push_back({std::move(pin.envelope), pin.request_id, s});
      }
      io_waker_.Notify();
    }
    StatusOr<std::vector<Entry>> got =
        first ? source->List(0) : source->Watch(seen, options_.watch_timeout);
    if (!got.ok()) {
      if (stopping()) break;
      if (++failures <= 5 || failures % 100 == 0) {
        LOG(WARNING) << "replica: cannot list versions (" << failures
                     << " failures): " << got.status();
      }
      // Back off, but wake at once for Stop or a pin request.
      if (WaitReadable(loader_waker_.fd(), std::chrono::milliseconds(200))) loader_waker_.Drain();
      continue;
    }
    failures = 0;
    std::vector<Entry> entries = std::move(got).value();
    if (first) {
      first = false;
      // Start from the newest full version; older versions are not needed.
      auto full = std::find_if(entries.rbegin(), entries.rend(), [](const Entry& e) {
        return e.manifest.kind() == proto::Manifest::KIND_FULL;
      });
      if (full != entries.rend()) {
        entries.erase(entries.begin(), std::prev(full.base()));
      } else if (!entries.empty()) {
        LOG(WARNING) << "replica: no full version yet; waiting for one";
        seen = entries.back().manifest.version();
        continue;
      }
    }
    for (const Entry& e : entries) {
      if (stopping()) break;
      const uint64_t v = e.manifest.version();
      if (v <= seen) continue;
      seen = v;
      Status s = Follow(*source, e);
      if (!s.ok()) Refuse(v, s);
    }
  }
}

Status Replica::Follow(Source& source, const Entry& entry) {
  const proto::Manifest& m = entry.manifest;
  const uint64_t v = m.version();
  if (m.format_version() > model_store::kModelFormatVersion) {
    broken_chain_ = true;
    return FailedPreconditionError("written by model format " + std::to_string(m.format_version()) +
                                   ", this replica reads up to " +
                                   std::to_string(model_store::kModelFormatVersion));
  }
  const bool full = m.kind() == proto::Manifest::KIND_FULL;
  if (!full) {
    if (newest_ == nullptr || broken_chain_) {
      return FailedPreconditionError("delta of version " + std::to_string(m.parent_version()) +
                                     " but no intact chain to apply it to; waiting for the next "
                                     "full version");
    }
    if (m.parent_version() != newest_->version()) {
      broken_chain_ = true;
      return FailedPreconditionError(
          "version gap: delta of version " + std::to_string(m.parent_version()) +
          " but the replica is at version " + std::to_string(newest_->version()) +
          " (a delta is missing); waiting for the next full version");
    }
  }
  const auto start = SteadyClock::now();
  Status s = [&]() -> Status {
    ASSIGN_OR_RETURN(std::string dir, source.Fetch(entry));
    ASSIGN_OR_RETURN(model_store::VersionReader reader, model_store::VersionReader::Open(dir));
    Status verified = reader.Verify();
    if (!verified.ok()) {
      source.Discard(v);
      return verified;
    }
    // Build on a copy: the version being served stays untouched.
    model_store::MaterializedModel model;
    if (!full) model = newest_->model();
    RETURN_IF_ERROR(
        model_store::ApplyVersion(reader, &model, {.verify_checksums = false, .include = {}}));
    ASSIGN_OR_RETURN(std::shared_ptr<const LoadedModel> loaded,
                     LoadedModel::Create(std::move(model)));
    newest_ = loaded;
    return OkStatus();
  }();
  if (!s.ok()) {
    broken_chain_ = true;
    return s;
  }
  broken_chain_ = false;
  if (full) source.Prune(v);
  Publish(newest_, /*newest=*/true, Seconds(SteadyClock::now() - start));
  return OkStatus();
}

Status Replica::LoadPinned(Source& source, uint64_t version) {
  {
    MutexLock lock(&mu_);
    auto it = cache_.find(version);
    if (it != cache_.end()) {
      pinned_ = version;
      serving_ = it->second;
      changed_.NotifyAll();
      return OkStatus();
    }
  }
  const auto start = SteadyClock::now();
  ASSIGN_OR_RETURN(std::vector<Entry> all, source.List(0));
  std::map<uint64_t, const Entry*> by_version;
  for (const Entry& e : all) by_version[e.manifest.version()] = &e;
  std::vector<const Entry*> chain;
  for (uint64_t v = version;;) {
    auto it = by_version.find(v);
    if (it == by_version.end()) {
      return NotFoundError(
          "version " + std::to_string(v) +
          (v == version ? " is not available" : " (in the chain) is not available"));
    }
    chain.insert(chain.begin(), it->second);
    if (it->second->manifest.kind() == proto::Manifest::KIND_FULL) break;
    v = it->second->manifest.parent_version();
    if (v == 0 || chain.size() > 100000) return DataLossError("broken chain");
  }
  model_store::MaterializedModel model;
  for (const Entry* e : chain) {
    ASSIGN_OR_RETURN(std::string dir, source.Fetch(*e));
    ASSIGN_OR_RETURN(model_store::VersionReader reader, model_store::VersionReader::Open(dir));
    Status verified = reader.Verify();
    if (!verified.ok()) {
      source.Discard(e->manifest.version());
      return verified;
    }
    RETURN_IF_ERROR(
        model_store::ApplyVersion(reader, &model, {.verify_checksums = false, .include = {}}));
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const LoadedModel> loaded,
                   LoadedModel::Create(std::move(model)));
  LOG(INFO) << "replica: loaded version " << version << " to pin it: " << loaded->rows()
            << " rows in " << Seconds(SteadyClock::now() - start) << " s";
  MutexLock lock(&mu_);
  cache_[version] = loaded;
  pinned_ = version;
  serving_ = loaded;
  EvictLocked();
  changed_.NotifyAll();
  return OkStatus();
}

void Replica::Publish(std::shared_ptr<const LoadedModel> model, bool newest, double seconds) {
  const uint64_t v = model->version();
  const proto::Manifest& m = model->model().manifest;
  LOG(INFO) << "replica: loaded version " << v
            << (m.kind() == proto::Manifest::KIND_FULL
                    ? std::string(" (full)")
                    : " (delta of " + std::to_string(m.parent_version()) + ")")
            << ": " << model->rows() << " rows in " << seconds << " s";
  MutexLock lock(&mu_);
  cache_[v] = model;
  if (newest) newest_version_ = v;
  if (pinned_ == 0) serving_ = model;
  counters_.set_versions_loaded(counters_.versions_loaded() + 1);
  counters_.set_last_load_seconds(seconds);
  EvictLocked();
  changed_.NotifyAll();
}

void Replica::Refuse(uint64_t version, const Status& status) {
  LOG(ERROR) << "replica: refused version " << version << ": " << status
             << " (still serving the last good version)";
  MutexLock lock(&mu_);
  counters_.set_versions_refused(counters_.versions_refused() + 1);
  counters_.set_last_error("version " + std::to_string(version) + ": " + status.ToString());
  changed_.NotifyAll();
}

void Replica::EvictLocked() {
  while (cache_.size() > static_cast<size_t>(options_.max_versions_cached)) {
    auto victim = cache_.end();
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      const uint64_t v = it->first;
      if (v == newest_version_ || v == pinned_ || it->second == serving_) continue;
      victim = it;
      break;
    }
    if (victim == cache_.end()) return;
    cache_.erase(victim);
  }
}

// ---------------------------------------------------------------------------
// I/O thread.

namespace {

// Receives one request: [routing id, (empty delimiter,)] header | keys | values.
// Errors leave *envelope set when the peer can be answered.
StatusOr<proto::Header> RecvRequest(zmq::socket_t& socket, std::vector<std::string>* envelope) {
  std::vector<zmq::message_t> frames;
  try {
    do {
      zmq::message_t f;
      if (!socket.recv(f, zmq::recv_flags::none)) return UnavailableError("recv interrupted");
      frames.push_back(std::move(f));
    } while (frames.back().more());
  } catch (const zmq::error_t& e) {
    return UnavailableError(std::string("zmq recv failed: ") + e.what());
  }
  envelope->clear();
  envelope->push_back(frames[0].to_string());
  size_t first = 1;
  if (frames.size() >= 2 && frames[1].size() == 0) {  // a REQ peer's delimiter
    envelope->emplace_back();
    first = 2;
  }
  if (frames.size() != first + 3) {
    return InvalidArgumentError("malformed message: expected 3 frames, got " +
                                std::to_string(frames.size() - first));
  }
  proto::Header header;
  if (!header.ParseFromArray(frames[first].data(), static_cast<int>(frames[first].size()))) {
    return InvalidArgumentError("malformed message: header does not parse");
  }
  if (header.protocol_version() != kProtocolVersion) {
    return FailedPreconditionError("peer speaks Eddy protocol version " +
                                   std::to_string(header.protocol_version()) +
                                   ", this replica speaks " + std::to_string(kProtocolVersion));
  }
  return header;
}

}  // namespace

Status Replica::Run() {
  if (socket_ == nullptr) return FailedPreconditionError("Replica::Run before Bind");
  std::jthread loader([this] { LoaderMain(); });
  Status result = OkStatus();
  Request request;
  while (!stopping()) {
    zmq::pollitem_t items[2] = {{socket_->handle(), 0, ZMQ_POLLIN, 0},
                                {nullptr, io_waker_.fd(), ZMQ_POLLIN, 0}};
    try {
      zmq::poll(items, 2, std::chrono::milliseconds(1000));
    } catch (const zmq::error_t& e) {
      result = UnavailableError(std::string("replica: poll failed: ") + e.what());
      break;
    }
    if (items[1].revents & ZMQ_POLLIN) {
      io_waker_.Drain();
      std::deque<Done> done;
      {
        MutexLock lock(&mu_);
        done.swap(done_);
      }
      for (const Done& d : done) SendStatusReply(d.envelope, d.request_id, d.status);
    }
    for (int i = 0; i < 64 && (items[0].revents & ZMQ_POLLIN) && !stopping(); ++i) {
      StatusOr<proto::Header> header = RecvRequest(*socket_, &request.envelope);
      if (!header.ok()) {
        {
          MutexLock lock(&mu_);
          counters_.set_predict_errors(counters_.predict_errors() + 1);
        }
        LOG_EVERY_N(WARNING, 100) << "replica: bad request: " << header.status();
        if (!request.envelope.empty()) SendError(request.envelope, 0, header.status());
      } else {
        request.header = std::move(header).value();
        Dispatch(request);
      }
      if (zmq::poll(items, 1, std::chrono::milliseconds(0)) == 0) break;
    }
  }
  stop_.store(true);
  loader_waker_.Notify();
  loader.join();
  return result;
}

void Replica::Dispatch(Request& request) {
  switch (request.header.type()) {
    case proto::PREDICT:
      HandlePredict(request);
      return;
    case proto::SERVE_CONTROL:
      HandleControl(request);
      return;
    default: {
      {
        MutexLock lock(&mu_);
        counters_.set_predict_errors(counters_.predict_errors() + 1);
      }
      SendError(request.envelope, request.header.request_id(),
                InvalidArgumentError("replica: unexpected message type " +
                                     std::string(MsgTypeName(request.header.type()))));
    }
  }
}

void Replica::HandlePredict(Request& request) {
  const uint64_t id = request.header.request_id();
  proto::PredictRequest body;
  std::shared_ptr<const LoadedModel> model;
  Status error;
  if (!body.ParseFromString(request.header.payload())) {
    error = InvalidArgumentError("PREDICT: payload does not parse");
  } else {
    MutexLock lock(&mu_);
    if (body.version() == 0) {
      model = serving_;
      if (model == nullptr) error = UnavailableError("no model version loaded yet");
    } else {
      auto it = cache_.find(body.version());
      if (it != cache_.end()) {
        model = it->second;
      } else {
        error = NotFoundError("version " + std::to_string(body.version()) + " is not cached");
      }
    }
  }
  std::vector<float> probs;
  if (error.ok()) {
    std::vector<std::string_view> rows(body.rows().begin(), body.rows().end());
    StatusOr<std::vector<float>> p = predictor_.Predict(*model, rows, body.no_label());
    if (p.ok()) {
      probs = std::move(p).value();
    } else {
      error = p.status();
    }
  }
  {
    MutexLock lock(&mu_);
    counters_.set_predict_requests(counters_.predict_requests() + 1);
    if (error.ok()) {
      counters_.set_predicted_rows(counters_.predicted_rows() + probs.size());
    } else {
      counters_.set_predict_errors(counters_.predict_errors() + 1);
    }
    changed_.NotifyAll();
  }
  if (!error.ok()) {
    LOG_EVERY_N(WARNING, 100) << "replica: PREDICT refused: " << error;
    SendError(request.envelope, id, error);
    return;
  }
  proto::Header header = MakeHeader(proto::REPLY, id);
  header.set_version(static_cast<int64_t>(model->version()));
  header.set_value_count(probs.size());
  header.set_dtype(proto::FLOAT32);
  proto::PredictReply reply;
  reply.set_version(model->version());
  reply.set_rows(probs.size());
  header.set_payload(reply.SerializeAsString());
  SendReply(request.envelope, header, std::as_bytes(std::span<const float>(probs)));
}

void Replica::HandleControl(Request& request) {
  const uint64_t id = request.header.request_id();
  proto::ServeControlRequest body;
  if (!body.ParseFromString(request.header.payload())) {
    SendError(request.envelope, id, InvalidArgumentError("SERVE_CONTROL: payload does not parse"));
    return;
  }
  Status status;
  {
    MutexLock lock(&mu_);
    const uint64_t v = body.version();
    switch (body.action()) {
      case proto::ServeControlRequest::STATUS:
        break;
      case proto::ServeControlRequest::UNPIN:
        pinned_ = 0;
        if (auto it = cache_.find(newest_version_); it != cache_.end()) serving_ = it->second;
        LOG(INFO) << "replica: unpinned; serving version " << newest_version_;
        break;
      case proto::ServeControlRequest::PIN:
      case proto::ServeControlRequest::ROLLBACK: {
        if (v == 0) {
          status = InvalidArgumentError("SERVE_CONTROL: a version is required");
          break;
        }
        auto it = cache_.find(v);
        if (it != cache_.end()) {
          pinned_ = v;
          serving_ = it->second;
          LOG(INFO) << "replica: pinned version " << v;
        } else if (body.action() == proto::ServeControlRequest::PIN) {
          // Fetched and loaded by the loader thread, which answers when done.
          pins_.push_back({request.envelope, id, v});
          loader_waker_.Notify();
          return;
        } else {
          std::string cached;
          for (const auto& [c, m] : cache_) cached += " " + std::to_string(c);
          status = NotFoundError("version " + std::to_string(v) +
                                 " is not cached (cached:" + cached + "); PIN loads it");
        }
        break;
      }
      default:
        status = InvalidArgumentError("SERVE_CONTROL: unknown action");
    }
    changed_.NotifyAll();
  }
  SendStatusReply(request.envelope, id, status);
}

void Replica::SendStatusReply(const std::vector<std::string>& envelope, uint64_t request_id,
                              const Status& status) {
  proto::Header header = MakeHeader(proto::REPLY, request_id);
  SetStatus(status, &header);
  header.set_payload(this->status().SerializeAsString());
  SendReply(envelope, header, {});
}

void Replica::SendError(const std::vector<std::string>& envelope, uint64_t request_id,
                        const Status& status) {
  proto::Header header = MakeHeader(proto::REPLY, request_id);
  SetStatus(status, &header);
  SendReply(envelope, header, {});
}

void Replica::SendReply(const std::vector<std::string>& envelope, const proto::Header& header,
                        std::span<const std::byte> values) {
  const std::string bytes = header.SerializeAsString();
  const auto more = zmq::send_flags::sndmore | zmq::send_flags::dontwait;
  try {
    for (const std::string& frame : envelope) socket_->send(zmq::buffer(frame), more);
    socket_->send(zmq::buffer(bytes), more);
    socket_->send(zmq::message_t(), more);
    socket_->send(zmq::message_t(values.data(), values.size()), zmq::send_flags::dontwait);
  } catch (const zmq::error_t& e) {
    LOG_EVERY_N(WARNING, 100) << "replica: reply not sent: " << e.what();
  }
}

}  // namespace eddy::serving
