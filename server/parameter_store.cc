#include "server/parameter_store.h"

#include <glog/logging.h>

#include <chrono>

#include "common/partition.h"
#include "common/table_config.h"

namespace eddy::server {

ParameterStore::ParameterStore(ParameterStoreOptions options)
    : options_(options), pool_(std::max(1, options.num_threads)) {}

Status ParameterStore::AddTable(const proto::TableConfig& table) {
  RETURN_IF_ERROR(ValidateTableConfig(table));
  if (sparse_.count(table.name()) || dense_.count(table.name())) {
    return InvalidArgumentError("table '" + table.name() + "' is defined twice");
  }
  if (table.dense()) {
    uint64_t count = DenseElementCount(table);
    uint64_t begin = DenseSliceBegin(count, options_.server_id, options_.num_servers);
    uint64_t end = DenseSliceBegin(count, options_.server_id + 1, options_.num_servers);
    ASSIGN_OR_RETURN(auto tensor, DenseTensor::Create(table, begin, end));
    dense_.emplace(table.name(), std::move(tensor));
  } else {
    ASSIGN_OR_RETURN(auto t, EmbeddingTable::Create(table, options_.num_shards));
    sparse_.emplace(table.name(), std::move(t));
  }
  return OkStatus();
}

StoreCapture ParameterStore::Capture(uint32_t since_epoch, uint32_t evict_before_epochs) {
  StoreCapture c;
  CaptureInto(since_epoch, evict_before_epochs, &c);
  return c;
}

void ParameterStore::CaptureInto(uint32_t since_epoch, uint32_t evict_before_epochs,
                                 StoreCapture* out) {
  StoreCapture& c = *out;
  c.rows = c.tombstones = c.evicted = 0;
  c.sparse.resize(sparse_.size());
  c.dense.resize(dense_.size());
  size_t sparse_index = 0, dense_index = 0;
  const auto start = std::chrono::steady_clock::now();
  for (const auto& [name, table] : sparse_) {
    model_store::SparseShard& shard = c.sparse[sparse_index++];
    shard.keys.clear();
    shard.values.clear();
    shard.state.clear();
    shard.tombstones.clear();
    shard.table = name;
    shard.shard = options_.server_id;
    shard.dim = table->dim();
    shard.state_floats = static_cast<uint32_t>(table->state_floats());
    // Tables advance their epochs together, so one number names them all.
    c.epoch = table->AdvanceEpoch();
    if (since_epoch == 0) {
      table->Export(&shard.keys, &shard.values, &shard.state, &pool_);
      table->DropTombstonesBefore(c.epoch);
    } else {
      table->ExportSince(since_epoch, &shard.keys, &shard.values, &shard.state, &shard.tombstones);
      table->DropTombstonesBefore(since_epoch);
    }
    c.rows += shard.keys.size();
    c.tombstones += shard.tombstones.size();
    if (evict_before_epochs > 0 && c.epoch > evict_before_epochs) {
      c.evicted += table->EvictStale(c.epoch - evict_before_epochs);
    }
  }
  const auto sparse_done = std::chrono::steady_clock::now();
  for (const auto& [name, tensor] : dense_) {
    model_store::DenseSlice& slice = c.dense[dense_index++];
    slice.table = name;
    slice.shard = options_.server_id;
    slice.offset = tensor->begin();
    slice.state_floats = tensor->state_floats_per_value();
    tensor->ExportPerValue(&slice.values, &slice.state);
  }
  VLOG(1) << "capture: sparse " << c.rows << " rows in "
          << std::chrono::duration<double>(sparse_done - start).count() * 1e3 << " ms, dense in "
          << std::chrono::duration<double>(std::chrono::steady_clock::now() - sparse_done).count() *
                 1e3
          << " ms";
}

EmbeddingTable* ParameterStore::sparse_table(const std::string& name) {
  auto it = sparse_.find(name);
  return it == sparse_.end() ? nullptr : it->second.get();
}

DenseTensor* ParameterStore::dense_tensor(const std::string& name) {
  auto it = dense_.find(name);
  return it == dense_.end() ? nullptr : it->second.get();
}

void ParameterStore::AddSparseSummary(proto::ServerReport* report) const {
  for (const auto& [name, table] : sparse_) {
    report->set_sparse_rows(report->sparse_rows() + table->size());
    report->set_memory_bytes(report->memory_bytes() + table->MemoryBytes());
    const AdmissionStats a = table->admission_stats();
    report->set_admitted_ids(report->admitted_ids() + a.admitted);
    report->set_waiting_ids(report->waiting_ids() + a.waiting());
    report->set_pending_pushes(report->pending_pushes() + a.pending_pushes);
  }
}

ParameterStoreStats ParameterStore::stats() const {
  return {requests_.load(), errors_.load(), keys_.load()};
}

Message ParameterStore::Handle(const Message& request, bool apply) {
  requests_.fetch_add(1, std::memory_order_relaxed);
  const proto::Header& h = request.header;
  Message reply{MakeHeader(proto::REPLY, h.request_id()), {}, {}};
  reply.header.set_sender(static_cast<int32_t>(options_.server_id));
  reply.header.set_table(h.table());
  StatusOr<Buffer> values = Status(StatusCode::kInternal, "unset");
  switch (h.type()) {
    case proto::PUSH:
    case proto::PULL:
    case proto::PUSH_PULL: {
      auto it = sparse_.find(h.table());
      if (it == sparse_.end()) {
        values = NotFoundError(dense_.count(h.table())
                                   ? "'" + h.table() + "' is a dense tensor, not a sparse table"
                                   : "unknown table '" + h.table() + "'");
      } else {
        values = HandleSparse(request, it->second.get(), apply);
      }
      break;
    }
    case proto::PUSH_DENSE:
    case proto::PULL_DENSE: {
      auto it = dense_.find(h.table());
      if (it == dense_.end()) {
        values = NotFoundError(sparse_.count(h.table())
                                   ? "'" + h.table() + "' is a sparse table, not a dense tensor"
                                   : "unknown dense tensor '" + h.table() + "'");
      } else {
        values = HandleDense(request, it->second.get(), apply);
        // After a push: the version it made; for a pull: the version read.
        if (values.ok() && apply) reply.header.set_version(it->second->version());
      }
      break;
    }
    default:
      values = UnimplementedError("a server does not handle message type " +
                                  std::string(MsgTypeName(h.type())) + " (" +
                                  std::to_string(static_cast<int>(h.type())) + ")");
  }
  if (!values.ok()) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    SetStatus(values.status(), &reply.header);
    return reply;
  }
  if (!values->empty()) {
    reply.values = std::move(values).value();
    reply.header.set_dtype(proto::FLOAT32);
    reply.header.set_value_count(reply.values.size() / sizeof(float));
  }
  return reply;
}

StatusOr<Buffer> ParameterStore::HandleSparse(const Message& request, EmbeddingTable* table,
                                              bool apply) {
  const proto::Header& h = request.header;
  const bool has_values = h.type() != proto::PULL;
  if (h.num_keys() == 0) return InvalidArgumentError("empty request: no keys");
  if (h.num_keys() > options_.max_request_keys) {
    return ResourceExhaustedError("request has " + std::to_string(h.num_keys()) +
                                  " keys, the limit is " +
                                  std::to_string(options_.max_request_keys) + " (split it)");
  }
  if (has_values && h.value_dim() != table->dim()) {
    return InvalidArgumentError("table '" + h.table() + "' has dim " +
                                std::to_string(table->dim()) + ", request has value_dim " +
                                std::to_string(h.value_dim()));
  }
  if (has_values && h.dtype() != proto::FLOAT32)
    return InvalidArgumentError("values must be FLOAT32");
  RETURN_IF_ERROR(ValidateFrames(request));
  Buffer keys_buf = request.keys.Aligned(alignof(uint64_t));
  std::span<const uint64_t> keys = keys_buf.As<uint64_t>();
  if (options_.num_servers > 1) {
    for (uint64_t k : keys) {
      uint32_t owner = ServerOfKey(k, options_.num_servers);
      if (owner != options_.server_id) {
        return InvalidArgumentError("key " + std::to_string(k) + " belongs to server " +
                                    std::to_string(owner) + ", not to server " +
                                    std::to_string(options_.server_id) +
                                    " (client and server disagree on the number of servers?)");
      }
    }
  }
  if (!apply) return Buffer();
  keys_.fetch_add(keys.size(), std::memory_order_relaxed);
  const size_t n_values = keys.size() * table->dim();
  Buffer grads_buf;
  if (has_values) grads_buf = request.values.Aligned(alignof(float));
  switch (h.type()) {
    case proto::PUSH:
      table->Push(keys, grads_buf.As<float>().data(), &pool_);
      return Buffer();
    case proto::PULL: {
      Buffer out = Buffer::AllocateUninitialized(n_values * sizeof(float));
      table->Pull(keys, out.MutableAs<float>().data(), &pool_);
      return out;
    }
    default: {
      Buffer out = Buffer::AllocateUninitialized(n_values * sizeof(float));
      table->PushPull(keys, grads_buf.As<float>().data(), out.MutableAs<float>().data(), &pool_);
      return out;
    }
  }
}

StatusOr<Buffer> ParameterStore::HandleDense(const Message& request, DenseTensor* tensor,
                                             bool apply) {
  const proto::Header& h = request.header;
  if (h.num_keys() != 0) return InvalidArgumentError("dense requests carry no keys");
  if (h.offset() != tensor->begin()) {
    return InvalidArgumentError(
        "dense slice of '" + h.table() + "' on server " + std::to_string(options_.server_id) +
        " starts at " + std::to_string(tensor->begin()) + ", request says " +
        std::to_string(h.offset()) + " (client and server disagree on the number of servers?)");
  }
  if (h.type() == proto::PUSH_DENSE) {
    if (h.value_count() != tensor->size()) {
      return InvalidArgumentError("dense slice of '" + h.table() + "' has " +
                                  std::to_string(tensor->size()) + " elements, request has " +
                                  std::to_string(h.value_count()));
    }
    if (h.dtype() != proto::FLOAT32) return InvalidArgumentError("values must be FLOAT32");
  }
  RETURN_IF_ERROR(ValidateFrames(request));
  if (!apply) return Buffer();
  if (h.type() == proto::PUSH_DENSE) {
    Buffer grads = request.values.Aligned(alignof(float));
    tensor->Push(grads.As<float>().data(), &pool_);
    return Buffer();
  }
  Buffer out = Buffer::AllocateUninitialized(tensor->size() * sizeof(float));
  tensor->Pull(out.MutableAs<float>().data(), &pool_);
  return out;
}

}  // namespace eddy::server
