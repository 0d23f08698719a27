#include "serving/replica.h"

#include <glog/logging.h>

#include <set>
#include <thread>

#include "common/event_loop.h"
#include "common/message.h"
#include "serving/serving_metrics.h"

namespace eddy::serving {

// Requests served before the loop looks at finished pins and Stop again.
constexpr int kRequestsPerRound = 64;

struct Replica::Request {
  Envelope envelope;  // routing id (+ empty delimiter from REQ peers)
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

uint64_t Replica::model_memory_bytes() const {
  MutexLock lock(&mu_);
  return model_bytes_;
}

std::shared_ptr<const LoadedModel> Replica::FindLocked(uint64_t version) const {
  if (newest_ != nullptr && newest_->version() == version) return newest_;
  auto it = cache_.find(version);
  return it == cache_.end() ? nullptr : it->second;
}

proto::ServeStatus Replica::StatusLocked() const {
  proto::ServeStatus s = counters_;
  s.set_current_version(serving_ == nullptr ? 0 : serving_->version());
  s.set_pinned_version(pinned_);
  s.set_newest_version(newest_version_);
  std::set<uint64_t> held;
  for (const auto& [v, m] : cache_) held.insert(v);
  if (newest_ != nullptr) held.insert(newest_->version());
  for (uint64_t v : held) s.add_cached_versions(v);
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
// I/O thread.

Status Replica::Run() {
  if (socket_ == nullptr) return FailedPreconditionError("Replica::Run before Bind");
  std::jthread loader([this] { LoaderMain(); });
  EventLoop loop;
  loop.AddWaker(io_waker_, [&] {
    SendFinishedPins();
    if (stopping()) loop.Exit(OkStatus());
  });
  Request request;
  loop.AddSocket(
      *socket_,
      [&] {
        if (stopping()) return loop.Exit(OkStatus());
        ServeOne(request);
      },
      kRequestsPerRound);
  Status result = loop.Run();
  if (!result.ok()) result = result.WithContext("replica");
  stop_.store(true);
  loader_waker_.Notify();
  loader.join();
  return result;
}

void Replica::SendFinishedPins() {
  std::deque<Done> done;
  {
    MutexLock lock(&mu_);
    done.swap(done_);
  }
  for (const Done& d : done) SendStatusReply(d.envelope, d.request_id, d.status);
}

void Replica::ServeOne(Request& request) {
  StatusOr<Message> message = RecvMessage(*socket_, &request.envelope);
  if (!message.ok()) {
    {
      MutexLock lock(&mu_);
      counters_.set_predict_errors(counters_.predict_errors() + 1);
    }
    if (options_.metrics != nullptr) options_.metrics->OnBadRequest(PredictTransport::kZmq);
    LOG_EVERY_N(WARNING, 100) << "replica: bad request: " << message.status();
    if (!request.envelope.empty()) SendError(request.envelope, 0, message.status());
    return;
  }
  request.header = std::move(message->header);
  Dispatch(request);
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
      if (options_.metrics != nullptr) options_.metrics->OnBadRequest(PredictTransport::kZmq);
      SendError(request.envelope, request.header.request_id(),
                InvalidArgumentError("replica: unexpected message type " +
                                     std::string(MsgTypeName(request.header.type()))));
    }
  }
}

void Replica::HandlePredict(Request& request) {
  const auto started = SteadyClock::now();
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
      model = FindLocked(body.version());
      if (model == nullptr) {
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
  if (options_.metrics != nullptr) {
    options_.metrics->OnPredict(
        PredictTransport::kZmq, model == nullptr ? 0 : model->version(),
        std::chrono::duration<double>(SteadyClock::now() - started).count(), probs.size(),
        error.ok());
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
  SendReply(request.envelope, header, Buffer::FromVector(std::move(probs)));
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
        if (newest_ != nullptr) serving_ = newest_;
        LOG(INFO) << "replica: unpinned; serving version " << newest_version_;
        break;
      case proto::ServeControlRequest::PIN:
      case proto::ServeControlRequest::ROLLBACK: {
        if (v == 0) {
          status = InvalidArgumentError("SERVE_CONTROL: a version is required");
          break;
        }
        if (std::shared_ptr<const LoadedModel> held = FindLocked(v)) {
          pinned_ = v;
          serving_ = std::move(held);
          LOG(INFO) << "replica: pinned version " << v;
        } else if (body.action() == proto::ServeControlRequest::PIN) {
          // Fetched and loaded by the loader thread, which answers when done.
          pins_.push_back({request.envelope, id, v});
          loader_waker_.Notify();
          return;
        } else {
          std::string cached;
          const proto::ServeStatus held = StatusLocked();
          for (uint64_t c : held.cached_versions()) cached += " " + std::to_string(c);
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

void Replica::SendStatusReply(const Envelope& envelope, uint64_t request_id, const Status& status) {
  proto::Header header = MakeHeader(proto::REPLY, request_id);
  SetStatus(status, &header);
  header.set_payload(this->status().SerializeAsString());
  SendReply(envelope, header, Buffer());
}

void Replica::SendError(const Envelope& envelope, uint64_t request_id, const Status& status) {
  proto::Header header = MakeHeader(proto::REPLY, request_id);
  SetStatus(status, &header);
  SendReply(envelope, header, Buffer());
}

void Replica::SendReply(const Envelope& envelope, const proto::Header& header, Buffer values) {
  Status sent = SendMessage(*socket_, Message{header, Buffer(), std::move(values)}, envelope,
                            /*dont_wait=*/true);
  if (!sent.ok()) {
    LOG_EVERY_N(WARNING, 100) << "replica: reply not sent: " << sent;
  }
}

}  // namespace eddy::serving
