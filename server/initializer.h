// Initializer: deterministic initial values for parameters. A value depends only
// on (seed, key, element index) for sparse rows and on (seed, global element
// index) for dense tensors, never on the order of first access or on how the
// keys are spread over servers and shards.
// Thread-safety: immutable after construction; all methods are const.
#ifndef EDDY_SERVER_INITIALIZER_H_
#define EDDY_SERVER_INITIALIZER_H_

#include <cstddef>
#include <cstdint>

#include "common/proto/eddy.pb.h"

namespace eddy::server {

// zeros | uniform on (-scale, scale) | normal(0, scale^2), from a counter-based
// generator (SplitMix64 of seed, key and index; Box-Muller for normal, one
// (cos, sin) pair per two consecutive elements).
class Initializer {
 public:
  // Requires a config accepted by eddy::ValidateTableConfig (an unknown kind
  // gives zeros).
  explicit Initializer(const proto::InitializerConfig& config);
  // The initializer of a sparse table's rows: the table's, except that the
  // first head.dim floats of a row come from the head's initializer when the
  // table has a head (proto::RowHead). The rest of a row is the same as without
  // a head: element i of key k is the same value either way.
  static Initializer ForRows(const proto::TableConfig& table);

  // Writes the `dim` initial weights of sparse row `key` to w.
  void FillRow(uint64_t key, float* w, size_t dim) const;
  // Writes elements [first_element, first_element + n) of a dense tensor to w.
  void FillDense(uint64_t first_element, float* w, size_t n) const;

 private:
  enum class Kind { kZeros, kUniform, kNormal };
  struct Part {
    Kind kind;
    double scale;
    uint64_t row_salt;  // mixed into a key to start its row's stream
  };

  static Part MakePart(const proto::InitializerConfig& config, uint64_t salt);
  // Writes elements [first, first + n) of the stream starting at `stream`.
  static void Fill(const Part& part, uint64_t stream, uint64_t first, float* w, size_t n);
  static void FillRowPart(const Part& part, uint64_t key, uint64_t first, float* w, size_t n);

  Part rows_;
  Part head_;  // the first head_dim_ floats of a row
  size_t head_dim_ = 0;
  uint64_t dense_base_;  // start of the dense tensors' stream
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_INITIALIZER_H_
