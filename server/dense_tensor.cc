#include "server/dense_tensor.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "common/table_config.h"
#include "server/initializer.h"

namespace eddy::server {
namespace {

// The pool is used from this many elements on (waking a pool thread and waiting
// for it costs tens of microseconds), with this many tasks per pool thread.
constexpr size_t kMinElementsForPool = 1 << 16;
constexpr size_t kTasksPerThread = 4;

}  // namespace

StatusOr<std::unique_ptr<DenseTensor>> DenseTensor::Create(const proto::TableConfig& config,
                                                           uint64_t begin, uint64_t end) {
  RETURN_IF_ERROR(ValidateTableConfig(config));
  if (!config.dense()) {
    return InvalidArgumentError("table '" + config.name() +
                                "' is a sparse table, not a dense tensor");
  }
  const uint64_t count = DenseElementCount(config);
  if (begin > end || end > count) {
    return InvalidArgumentError(
        "dense tensor '" + config.name() + "' has " + std::to_string(count) + " elements; slice [" +
        std::to_string(begin) + ", " + std::to_string(end) + ") is not inside it");
  }
  auto optimizer = Optimizer::Create(config.optimizer());
  if (!optimizer.ok()) {
    return optimizer.status().WithContext("dense tensor '" + config.name() + "'");
  }
  return std::unique_ptr<DenseTensor>(
      new DenseTensor(config, begin, end, std::move(optimizer).value()));
}

DenseTensor::DenseTensor(const proto::TableConfig& config, uint64_t begin, uint64_t end,
                         std::unique_ptr<Optimizer> optimizer)
    : config_(config),
      begin_(begin),
      size_(end - begin),
      optimizer_(std::move(optimizer)),
      num_blocks_((size_ + kBlockSize - 1) / kBlockSize),
      block_state_(optimizer_->StateSize(kBlockSize)),
      weights_(size_),
      state_(num_blocks_ * block_state_),
      block_mu_(std::make_unique<std::mutex[]>(num_blocks_)) {
  Initializer(config.initializer()).FillDense(begin_, weights_.data(), size_);
  for (size_t b = 0; b < num_blocks_; ++b) {
    const size_t first = b * kBlockSize;
    const size_t len = std::min<size_t>(kBlockSize, size_ - first);
    optimizer_->InitState(weights_.data() + first, state_.data() + b * block_state_, len);
  }
}

void DenseTensor::Push(const float* grads, ThreadPool* pool) {
  ForEachBlock(pool, [&](size_t b, size_t first, size_t len) {
    optimizer_->Apply(weights_.data() + first, state_.data() + b * block_state_, grads + first,
                      len);
  });
  version_.fetch_add(1, std::memory_order_relaxed);
}

void DenseTensor::Pull(float* out, ThreadPool* pool) const {
  ForEachBlock(pool, [&](size_t, size_t first, size_t len) {
    std::memcpy(out + first, weights_.data() + first, len * sizeof(float));
  });
}

void DenseTensor::PushPull(const float* grads, float* out, ThreadPool* pool) {
  ForEachBlock(pool, [&](size_t b, size_t first, size_t len) {
    optimizer_->Apply(weights_.data() + first, state_.data() + b * block_state_, grads + first,
                      len);
    std::memcpy(out + first, weights_.data() + first, len * sizeof(float));
  });
  version_.fetch_add(1, std::memory_order_relaxed);
}

void DenseTensor::Export(std::vector<float>* values, std::vector<float>* state) const {
  values->resize(size_);
  state->resize(state_.size());
  ForEachBlock(nullptr, [&](size_t b, size_t first, size_t len) {
    std::memcpy(values->data() + first, weights_.data() + first, len * sizeof(float));
    std::memcpy(state->data() + b * block_state_, state_.data() + b * block_state_,
                block_state_ * sizeof(float));
  });
}

Status DenseTensor::Import(std::span<const float> values, std::span<const float> state) {
  if (values.size() != size_ || (!state.empty() && state.size() != state_.size())) {
    return InvalidArgumentError(
        "dense slice of '" + config_.name() + "' holds " + std::to_string(size_) + " values and " +
        std::to_string(state_.size()) + " state floats; got " + std::to_string(values.size()) +
        " and " + std::to_string(state.size()));
  }
  ForEachBlock(nullptr, [&](size_t b, size_t first, size_t len) {
    std::memcpy(weights_.data() + first, values.data() + first, len * sizeof(float));
    float* st = state_.data() + b * block_state_;
    if (state.empty()) {
      optimizer_->InitState(weights_.data() + first, st, len);
    } else {
      std::memcpy(st, state.data() + b * block_state_, block_state_ * sizeof(float));
    }
  });
  return OkStatus();
}

uint32_t DenseTensor::state_floats_per_value() const {
  // StateSize(d) = per_element * d + per_block.
  return static_cast<uint32_t>(optimizer_->StateSize(1));
}

void DenseTensor::ExportPerValue(std::vector<float>* values, std::vector<float>* state) const {
  const size_t per_element = optimizer_->StateSize(2) - optimizer_->StateSize(1);
  const size_t per_block = optimizer_->StateSize(1) - per_element;
  const size_t k = per_element + per_block;
  values->resize(size_);
  state->resize(size_ * k);
  ForEachBlock(nullptr, [&](size_t b, size_t first, size_t len) {
    std::memcpy(values->data() + first, weights_.data() + first, len * sizeof(float));
    const float* st = state_.data() + b * block_state_;
    for (size_t i = 0; i < len; ++i) {
      float* out = state->data() + (first + i) * k;
      for (size_t a = 0; a < per_element; ++a) out[a] = st[a * len + i];
      for (size_t c = 0; c < per_block; ++c) out[per_element + c] = st[per_element * len + c];
    }
  });
}

Status DenseTensor::ImportPerValue(std::span<const float> values, std::span<const float> state) {
  const size_t per_element = optimizer_->StateSize(2) - optimizer_->StateSize(1);
  const size_t per_block = optimizer_->StateSize(1) - per_element;
  const size_t k = per_element + per_block;
  if (values.size() != size_ || (!state.empty() && state.size() != size_ * k)) {
    return InvalidArgumentError("dense slice of '" + config_.name() + "' holds " +
                                std::to_string(size_) + " values with " + std::to_string(k) +
                                " state floats each; got " + std::to_string(values.size()) +
                                " values and " + std::to_string(state.size()) + " state floats");
  }
  ForEachBlock(nullptr, [&](size_t b, size_t first, size_t len) {
    std::memcpy(weights_.data() + first, values.data() + first, len * sizeof(float));
    float* st = state_.data() + b * block_state_;
    if (state.empty()) {
      optimizer_->InitState(weights_.data() + first, st, len);
      return;
    }
    for (size_t i = 0; i < len; ++i) {
      const float* in = state.data() + (first + i) * k;
      for (size_t a = 0; a < per_element; ++a) st[a * len + i] = in[a];
    }
    const float* head = state.data() + first * k;
    for (size_t c = 0; c < per_block; ++c) st[per_element * len + c] = head[per_element + c];
  });
  return OkStatus();
}

void DenseTensor::ForEachBlock(ThreadPool* pool,
                               const std::function<void(size_t, size_t, size_t)>& fn) const {
  auto run = [&](size_t b) {
    const size_t first = b * kBlockSize;
    std::lock_guard lock(block_mu_[b]);
    fn(b, first, std::min<size_t>(kBlockSize, size_ - first));
  };
  const size_t threads = pool == nullptr ? 1 : static_cast<size_t>(pool->num_threads());
  const size_t tasks = std::min(num_blocks_, threads * kTasksPerThread);
  if (threads <= 1 || tasks <= 1 || size_ < kMinElementsForPool) {
    for (size_t b = 0; b < num_blocks_; ++b) run(b);
    return;
  }
  // Task t takes blocks [t * num_blocks_ / tasks, (t + 1) * num_blocks_ / tasks).
  pool->ParallelFor(tasks, [&](size_t t) {
    const size_t last = (t + 1) * num_blocks_ / tasks;
    for (size_t b = t * num_blocks_ / tasks; b < last; ++b) run(b);
  });
}

}  // namespace eddy::server
