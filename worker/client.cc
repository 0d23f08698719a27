#include "worker/client.h"

#include <algorithm>
#include <cstring>

#include "common/partition.h"
#include "common/scheduler_link.h"
#include "common/table_config.h"
#include "common/transport.h"

namespace eddy::worker {

// ---------------------------------------------------------------- Op

Status Op::Wait(std::optional<std::chrono::milliseconds> timeout) {
  MutexLock lock(&mu_);
  if (!timeout) {
    while (!done_) cv_.Wait(&mu_);
    return status_;
  }
  const auto deadline = std::chrono::steady_clock::now() + *timeout;
  while (!done_) {
    if (!cv_.WaitUntil(&mu_, deadline) && !done_) {
      return DeadlineExceededError("operation not complete after " +
                                   std::to_string(timeout->count()) + " ms");
    }
  }
  return status_;
}

bool Op::done() const {
  MutexLock lock(&mu_);
  return done_;
}

std::span<const float> Op::values() const {
  MutexLock lock(&mu_);
  if (!done_ || !status_.ok()) return {};
  return result_.As<float>();
}

void Op::Complete(const Status& status) {
  Callback cb;
  {
    MutexLock lock(&mu_);
    if (completing_) return;
    completing_ = true;
    status_ = status;
    if (!status.ok()) result_ = Buffer();
    cb = std::move(callback_);
  }
  // The callback runs before waiters wake: when Wait() returns, it has run.
  if (cb) cb(status);
  {
    MutexLock lock(&mu_);
    done_ = true;
  }
  cv_.NotifyAll();
}

// ---------------------------------------------------------------- Client

Client::Client(ClientOptions options) : options_(std::move(options)) {}

Client::~Client() {
  {
    MutexLock lock(&queue_mu_);
    stopping_ = true;
  }
  waker_.Notify();
  if (io_thread_.joinable()) io_thread_.join();
  // The I/O thread has failed whatever was pending on its way out.
}

StatusOr<std::unique_ptr<Client>> Client::Connect(zmq::context_t& context, ClientOptions options) {
  std::unique_ptr<Client> client(new Client(std::move(options)));
  SchedulerLinkOptions link_options;
  link_options.scheduler_endpoint = client->options_.scheduler;
  link_options.registration_timeout = client->options_.registration_timeout;
  link_options.self.set_role(proto::WORKER);
  link_options.self.set_host(HostName());
  link_options.self.set_pid(ProcessId());
  link_options.self.set_requested_rank(client->options_.requested_rank);
  link_options.transport = client->options_.transport;
  client->link_ = std::make_unique<SchedulerLink>(context, link_options);
  ASSIGN_OR_RETURN(client->view_, client->link_->Register(nullptr));
  client->worker_id_ = client->view_.your_id();
  for (const proto::NodeEntry& server : client->view_.servers()) {
    zmq::socket_t s(context, zmq::socket_type::dealer);
    ConfigureSocket(s, /*linger_ms=*/0, client->options_.max_message_bytes);
    const ConnectionLabel label{NodeRole::kWorker, client->worker_id_, NodeRole::kServer,
                                server.id(), ConnectionPurpose::kData};
    RETURN_IF_ERROR(ConnectVia(client->options_.transport, s, server.info().endpoint(), label));
    client->servers_.push_back(std::move(s));
    client->endpoints_.push_back(server.info().endpoint());
  }
  client->epoch_ = client->view_.epoch();
  Client* raw = client.get();
  client->io_thread_ = std::jthread([raw] { raw->IoLoop(); });
  return client;
}

const proto::TableConfig* Client::table(std::string_view name) const {
  for (const proto::TableConfig& t : view_.tables()) {
    if (t.name() == name) return &t;
  }
  return nullptr;
}

Status Client::health() const {
  MutexLock lock(&queue_mu_);
  return health_;
}

std::string Client::ServerName(uint32_t server) const {
  if (server >= endpoints_.size()) return "scheduler";
  return "server " + std::to_string(server) + " (" + endpoints_[server] + ")";
}

StatusOr<proto::ClusterView> Client::WaitForRestart(std::chrono::milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  proto::ClusterView view;
  {
    MutexLock lock(&restart_mu_);
    while (!restart_view_) {
      Status h = health();
      if (!h.ok()) return h;
      // Woken by RESTART, or every 100 ms to see the job's health.
      if (SteadyClock::now() >= deadline) {
        return DeadlineExceededError("worker " + std::to_string(worker_id_) +
                                     ": the servers did not recover within " +
                                     std::to_string(timeout.count()) + " ms");
      }
      restart_cv_.WaitUntil(&restart_mu_, std::min(deadline, SteadyClock::now() +
                                                                 std::chrono::milliseconds(100)));
    }
    view = std::move(*restart_view_);
    restart_view_.reset();
  }
  {
    MutexLock lock(&start_mu_);
    if (view.resume_version() == 0 && view.resume_positions_size() == 0 && first_start_) {
      *view.add_resume_positions() = *first_start_;
    }
    start_rows_ = 0;
    start_state_.clear();
  }
  view_ = view;
  stream_rows_.store(0);
  recovering_.store(false);
  return view;
}

OpPtr Client::Failed(const Status& status, Callback callback) {
  auto op = std::make_shared<Op>(std::move(callback));
  op->Complete(status);
  return op;
}

OpPtr Client::Pull(std::string_view table, Buffer keys, Callback callback) {
  return Sparse(proto::PULL, table, std::move(keys), Buffer(), std::move(callback));
}
OpPtr Client::Push(std::string_view table, Buffer keys, Buffer grads, Callback callback) {
  return Sparse(proto::PUSH, table, std::move(keys), std::move(grads), std::move(callback));
}
OpPtr Client::PushPull(std::string_view table, Buffer keys, Buffer grads, Callback callback) {
  return Sparse(proto::PUSH_PULL, table, std::move(keys), std::move(grads), std::move(callback));
}
OpPtr Client::Pull(std::string_view table, std::span<const uint64_t> keys, Callback callback) {
  return Pull(table, Buffer::CopyOf(keys), std::move(callback));
}
OpPtr Client::Push(std::string_view table, std::span<const uint64_t> keys,
                   std::span<const float> grads, Callback callback) {
  return Push(table, Buffer::CopyOf(keys), Buffer::CopyOf(grads), std::move(callback));
}

OpPtr Client::Sparse(proto::MsgType type, std::string_view table_name, Buffer keys, Buffer grads,
                     Callback callback) {
  const proto::TableConfig* table = this->table(table_name);
  if (table == nullptr)
    return Failed(NotFoundError("unknown table '" + std::string(table_name) + "'"),
                  std::move(callback));
  if (table->dense()) {
    return Failed(
        InvalidArgumentError("'" + table->name() + "' is a dense tensor: use PushDense/PullDense"),
        std::move(callback));
  }
  const uint32_t dim = table->dim();
  if (keys.size() % sizeof(uint64_t) != 0) {
    return Failed(InvalidArgumentError("key buffer size is not a multiple of 8 bytes"),
                  std::move(callback));
  }
  keys = keys.Aligned(alignof(uint64_t));
  const size_t n = keys.size() / sizeof(uint64_t);
  const bool has_grads = type != proto::PULL;
  if (has_grads) {
    if (grads.size() != n * dim * sizeof(float)) {
      return Failed(InvalidArgumentError(
                        "table '" + table->name() + "' has dim " + std::to_string(dim) + ": " +
                        std::to_string(n) + " keys need " + std::to_string(n * dim) +
                        " gradient floats, got " + std::to_string(grads.size() / sizeof(float))),
                    std::move(callback));
    }
    grads = grads.Aligned(alignof(float));
  }
  auto op = std::make_shared<Op>(std::move(callback));
  op->dim_ = dim;
  if (n == 0) {
    op->Complete(OkStatus());
    return op;
  }
  const uint32_t num_servers = static_cast<uint32_t>(servers_.size());
  std::span<const uint64_t> key_span = keys.As<uint64_t>();
  auto make_message = [&](Buffer part_keys, Buffer part_grads) {
    Message m{MakeHeader(type, next_request_id_.fetch_add(1)), std::move(part_keys),
              std::move(part_grads)};
    m.header.set_table(table->name());
    m.header.set_sender(worker_id_);
    m.header.set_num_keys(m.keys.size() / sizeof(uint64_t));
    m.header.set_clock(clock_.load());
    m.header.set_value_dim(dim);
    if (has_grads) m.header.set_dtype(proto::FLOAT32);
    return m;
  };

  std::vector<uint32_t> owner(n);
  std::vector<uint32_t> counts(num_servers, 0);
  for (size_t i = 0; i < n; ++i) {
    owner[i] = num_servers == 1 ? 0 : ServerOfKey(key_span[i], num_servers);
    ++counts[owner[i]];
  }
  std::vector<Part> parts;
  if (counts[owner[0]] == n) {
    // One server owns every key: send the caller's buffers as they are.
    op->remaining_parts_ = 1;
    op->expected_values_.push_back(type == proto::PUSH ? 0 : n * dim);
    parts.push_back(Part{owner[0], make_message(std::move(keys), std::move(grads)), op, 0});
  } else {
    op->scatter_ = type != proto::PUSH;
    if (op->scatter_) op->result_ = Buffer::AllocateUninitialized(n * dim * sizeof(float));
    std::vector<uint32_t> part_of_server(num_servers, kControl);
    std::vector<Buffer> part_keys, part_grads;
    std::vector<uint32_t> part_server;
    for (uint32_t s = 0; s < num_servers; ++s) {
      if (counts[s] == 0) continue;
      part_of_server[s] = static_cast<uint32_t>(part_server.size());
      part_server.push_back(s);
      part_keys.push_back(Buffer::AllocateUninitialized(counts[s] * sizeof(uint64_t)));
      if (has_grads)
        part_grads.push_back(Buffer::AllocateUninitialized(counts[s] * dim * sizeof(float)));
      op->positions_.emplace_back();
      if (op->scatter_) op->positions_.back().reserve(counts[s]);
      op->expected_values_.push_back(type == proto::PUSH ? 0 : counts[s] * dim);
    }
    std::vector<size_t> fill(part_server.size(), 0);
    const float* g = has_grads ? grads.As<float>().data() : nullptr;
    for (size_t i = 0; i < n; ++i) {
      uint32_t p = part_of_server[owner[i]];
      size_t j = fill[p]++;
      part_keys[p].MutableAs<uint64_t>()[j] = key_span[i];
      if (has_grads)
        std::memcpy(part_grads[p].MutableAs<float>().data() + j * dim, g + i * dim,
                    dim * sizeof(float));
      if (op->scatter_) op->positions_[p].push_back(static_cast<uint32_t>(i));
    }
    op->remaining_parts_ = static_cast<int>(part_server.size());
    for (uint32_t p = 0; p < part_server.size(); ++p) {
      parts.push_back(Part{
          part_server[p],
          make_message(std::move(part_keys[p]), has_grads ? std::move(part_grads[p]) : Buffer()),
          op, p});
    }
  }
  Enqueue(std::move(parts));
  return op;
}

OpPtr Client::PushDense(std::string_view name, Buffer grads, Callback callback) {
  const proto::TableConfig* t = table(name);
  if (t == nullptr || !t->dense()) {
    return Failed(NotFoundError("no dense tensor named '" + std::string(name) + "'"),
                  std::move(callback));
  }
  const uint64_t count = DenseElementCount(*t);
  if (grads.size() != count * sizeof(float)) {
    return Failed(InvalidArgumentError("dense tensor '" + t->name() + "' has " +
                                       std::to_string(count) + " elements, got " +
                                       std::to_string(grads.size() / sizeof(float)) + " gradients"),
                  std::move(callback));
  }
  grads = grads.Aligned(alignof(float));
  auto op = std::make_shared<Op>(std::move(callback));
  const uint32_t num_servers = static_cast<uint32_t>(servers_.size());
  std::vector<Part> parts;
  for (uint32_t s = 0; s < num_servers; ++s) {
    uint64_t begin = DenseSliceBegin(count, s, num_servers),
             end = DenseSliceBegin(count, s + 1, num_servers);
    if (begin == end) continue;
    Message m{MakeHeader(proto::PUSH_DENSE, next_request_id_.fetch_add(1)),
              {},
              grads.Slice(begin * sizeof(float), (end - begin) * sizeof(float))};
    m.header.set_table(t->name());
    m.header.set_sender(worker_id_);
    m.header.set_offset(begin);
    m.header.set_clock(clock_.load());
    m.header.set_value_count(end - begin);
    m.header.set_dtype(proto::FLOAT32);
    op->expected_values_.push_back(0);
    parts.push_back(Part{s, std::move(m), op, static_cast<uint32_t>(parts.size())});
  }
  op->remaining_parts_ = static_cast<int>(parts.size());
  Enqueue(std::move(parts));
  return op;
}

OpPtr Client::PullDense(std::string_view name, Callback callback) {
  const proto::TableConfig* t = table(name);
  if (t == nullptr || !t->dense()) {
    return Failed(NotFoundError("no dense tensor named '" + std::string(name) + "'"),
                  std::move(callback));
  }
  const uint64_t count = DenseElementCount(*t);
  auto op = std::make_shared<Op>(std::move(callback));
  const uint32_t num_servers = static_cast<uint32_t>(servers_.size());
  std::vector<Part> parts;
  for (uint32_t s = 0; s < num_servers; ++s) {
    uint64_t begin = DenseSliceBegin(count, s, num_servers),
             end = DenseSliceBegin(count, s + 1, num_servers);
    if (begin == end) continue;
    Message m{MakeHeader(proto::PULL_DENSE, next_request_id_.fetch_add(1)), {}, {}};
    m.header.set_table(t->name());
    m.header.set_sender(worker_id_);
    m.header.set_offset(begin);
    m.header.set_clock(clock_.load());
    op->offsets_.push_back(begin);
    op->expected_values_.push_back(end - begin);
    parts.push_back(Part{s, std::move(m), op, static_cast<uint32_t>(parts.size())});
  }
  op->scatter_ = parts.size() > 1;
  if (op->scatter_) op->result_ = Buffer::AllocateUninitialized(count * sizeof(float));
  op->remaining_parts_ = static_cast<int>(parts.size());
  Enqueue(std::move(parts));
  return op;
}

void Client::SetStartPosition(uint64_t stream_rows, std::string stream_state) {
  stream_rows_.store(stream_rows);
  MutexLock lock(&start_mu_);
  if (!first_start_) {
    first_start_.emplace();
    first_start_->set_worker(worker_id_);
    first_start_->set_rows_consumed(stream_rows);
    if (!stream_state.empty()) first_start_->set_stream_state(stream_state);
  }
  start_rows_ = stream_rows;
  start_state_ = std::move(stream_state);
}

OpPtr Client::ClockAt(uint64_t stream_rows, std::string stream_state, Callback callback) {
  stream_rows_.store(stream_rows);
  return SendClock(stream_rows, std::move(stream_state), std::move(callback));
}

OpPtr Client::Clock(Callback callback) {
  return SendClock(stream_rows_.load(), {}, std::move(callback));
}

OpPtr Client::SendClock(uint64_t stream_rows, std::string stream_state, Callback callback) {
  auto op = std::make_shared<Op>(std::move(callback));
  const int64_t finished = clock_.fetch_add(1) + 1;
  std::vector<Part> parts;
  for (uint32_t s = 0; s < servers_.size(); ++s) {
    Message m{MakeHeader(proto::CLOCK, next_request_id_.fetch_add(1)), {}, {}};
    m.header.set_sender(worker_id_);
    m.header.set_clock(finished);
    m.header.set_offset(stream_rows);
    if (!stream_state.empty()) m.header.set_stream_state(stream_state);
    op->expected_values_.push_back(0);
    parts.push_back(Part{s, std::move(m), op, s});
  }
  op->remaining_parts_ = static_cast<int>(parts.size());
  Enqueue(std::move(parts));
  return op;
}

OpPtr Client::ControlOp(proto::MsgType type, std::string payload, std::string name) {
  auto op = std::make_shared<Op>();
  op->remaining_parts_ = 1;
  Message m{MakeHeader(type), {}, {}};
  m.header.set_payload(std::move(payload));
  m.header.set_table(std::move(name));
  std::vector<Part> parts;
  parts.push_back(Part{kControl, std::move(m), op, 0});
  Enqueue(std::move(parts));
  return op;
}

Status Client::Barrier(const std::string& name) {
  return ControlOp(proto::BARRIER, {}, name)->Wait();
}

void Client::Abort(const Status& why) {
  auto op = std::make_shared<Op>();
  Message m{MakeHeader(proto::ABORT), {}, {}};
  m.header.set_status_message(why.ToString());
  std::vector<Part> parts;
  parts.push_back(Part{kControl, std::move(m), op, 0});
  Enqueue(std::move(parts));
  op->Wait(std::chrono::milliseconds(5000)).IgnoreError();
}

void Client::ReportMetrics(std::string payload) {
  if (payload.size() > kMaxMetricsBytes) {
    LOG_FIRST_N(WARNING, 5) << "worker " << worker_id_ << ": dropped a metrics report of "
                            << payload.size() << " bytes (at most " << kMaxMetricsBytes
                            << " are sent)";
    return;
  }
  bool wake;
  {
    MutexLock lock(&queue_mu_);
    if (!health_.ok() || stopping_) return;
    // An earlier report still waiting has woken the I/O thread already; it
    // takes whichever report is the latest when it gets to it.
    wake = !metrics_.has_value();
    metrics_ = std::move(payload);
  }
  if (wake) waker_.Notify();
}

Status Client::Finish(const std::string& report) {
  // A last CLOCK tells every server this worker will not clock again, so
  // pulls under a staleness bound, per-clock sums and version cuts stop
  // waiting for it (its workers may have more batches than this one).
  auto done = std::make_shared<Op>();
  std::vector<Part> parts;
  for (uint32_t s = 0; s < servers_.size(); ++s) {
    Message m{MakeHeader(proto::CLOCK, next_request_id_.fetch_add(1)), {}, {}};
    m.header.set_sender(worker_id_);
    m.header.set_clock(kFinishedClock);
    m.header.set_offset(stream_rows_.load());
    done->expected_values_.push_back(0);
    parts.push_back(Part{s, std::move(m), done, s});
  }
  done->remaining_parts_ = static_cast<int>(parts.size());
  Enqueue(std::move(parts));
  return ControlOp(proto::WORKER_DONE, report, {})->Wait();
}

void Client::Enqueue(std::vector<Part> parts) {
  Status refused;
  {
    MutexLock lock(&queue_mu_);
    if (!health_.ok()) {
      refused = health_;
    } else if (recovering_.load() && parts.front().server != kControl) {
      refused = AbortedError("recovering: the servers are rolling back to the last version");
    } else if (stopping_) {
      refused = CancelledError("client is shutting down");
    } else {
      for (Part& p : parts) queue_.push_back(std::move(p));
    }
  }
  if (!refused.ok()) {
    for (Part& p : parts) p.op->Complete(refused);
    return;
  }
  waker_.Notify();
}

}  // namespace eddy::worker
