// DenseTensor: one server's slice [begin, end) of a dense tensor (elements in
// row-major order of the config's shape), with the optimizer applied elementwise.
// Thread-safety: internally synchronized (one mutex per block of elements); Push,
// Pull and PushPull may be called concurrently from any thread. A Pull running
// concurrently with a Push sees each block either before or after the update.
#ifndef EDDY_SERVER_DENSE_TENSOR_H_
#define EDDY_SERVER_DENSE_TENSOR_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "common/proto/eddy.pb.h"
#include "common/status.h"
#include "common/thread_pool.h"
#include "server/optimizer.h"

namespace eddy::server {

// The slice is cut into blocks of kBlockSize elements (the last one shorter);
// each block is an optimizer "row" with its own state (so Adam's step count is
// per block) and its own mutex. Blocks of large slices are processed in
// parallel on the pool.
// Initial values are Initializer::FillDense of the global element indices, so
// they do not depend on how the tensor is sliced over servers.
class DenseTensor {
 public:
  static constexpr size_t kBlockSize = 4096;

  // Requires a dense config (ValidateTableConfig) and begin <= end <= element
  // count. Errors: InvalidArgument otherwise.
  static StatusOr<std::unique_ptr<DenseTensor>> Create(const proto::TableConfig& config,
                                                       uint64_t begin, uint64_t end);
  DenseTensor(const DenseTensor&) = delete;
  DenseTensor& operator=(const DenseTensor&) = delete;

  const proto::TableConfig& config() const { return config_; }
  // First global element of the slice, and its number of elements.
  uint64_t begin() const { return begin_; }
  uint64_t size() const { return size_; }

  // `grads` holds size() gradients, for the whole slice.
  void Push(const float* grads, ThreadPool* pool);
  // Writes the size() values of the slice to `out`.
  void Pull(float* out, ThreadPool* pool) const;
  // Push, then out = the updated values (one pass).
  void PushPull(const float* grads, float* out, ThreadPool* pool);

  // Pushes applied so far (the tensor's version): a pull reply carries it, so a
  // worker can tell how many updates happened between its read and its write.
  uint64_t version() const { return version_.load(std::memory_order_relaxed); }

  // Copies the slice's values (size() floats) and its optimizer state (an opaque
  // array: per block of kBlockSize elements, the optimizer's state of that block)
  // with every block locked in turn.
  void Export(std::vector<float>* values, std::vector<float>* state) const;
  // Overwrites values and state from Export() of a slice of the same range and
  // optimizer; an empty `state` restarts the optimizer state. Errors:
  // InvalidArgument on sizes.
  Status Import(std::span<const float> values, std::span<const float> state);

  // The same state laid out per value, independent of blocks (the model
  // version format): state_floats_per_value() floats per element, the
  // optimizer's per-element arrays followed by its per-block scalars (e.g.
  // Adam's step count), repeated for every element of the block.
  uint32_t state_floats_per_value() const;
  void ExportPerValue(std::vector<float>* values, std::vector<float>* state) const;
  // Inverse of ExportPerValue, for any slicing of the same tensor (per-block
  // scalars come from each new block's first element). An empty `state`
  // restarts the optimizer. Errors: InvalidArgument on sizes.
  Status ImportPerValue(std::span<const float> values, std::span<const float> state);

  // Bytes of values and optimizer state.
  size_t MemoryBytes() const { return (weights_.size() + state_.size()) * sizeof(float); }

 private:
  DenseTensor(const proto::TableConfig& config, uint64_t begin, uint64_t end,
              std::unique_ptr<Optimizer> optimizer);

  // Calls fn(block, first element, length) for every block with the block's
  // mutex held, in parallel on `pool` if it has several threads.
  void ForEachBlock(ThreadPool* pool, const std::function<void(size_t, size_t, size_t)>& fn) const;

  const proto::TableConfig config_;
  const uint64_t begin_;
  const uint64_t size_;
  const std::unique_ptr<Optimizer> optimizer_;
  const size_t num_blocks_;
  const size_t block_state_;  // state floats of a full block
  // Block b holds elements [b * kBlockSize, ...) of weights_ and state floats
  // [b * block_state_, ...) of state_; both are guarded by block_mu_[b].
  std::vector<float> weights_;
  std::vector<float> state_;
  const std::unique_ptr<std::mutex[]> block_mu_;
  std::atomic<uint64_t> version_{0};
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_DENSE_TENSOR_H_
