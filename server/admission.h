// Feature admission: an id gets a row in an embedding table only once it has
// been pushed often enough (min_count sightings) or, with a probability per
// sighting, by a seeded coin; until then its sightings are counted in a small
// count-min sketch instead of a row. This bounds memory on long-tailed streams
// and keeps the vectors of one-off ids (noise every FM pair would pick up) out
// of the model. A pending id reads as a zero row, as an unknown id does when
// serving.
// Thread-safety: an AdmissionFilter is not thread-safe; the embedding table
// keeps one per shard, used under that shard's mutex.
#ifndef EDDY_SERVER_ADMISSION_H_
#define EDDY_SERVER_ADMISSION_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "common/proto/eddy.pb.h"

namespace eddy::server {

// Whether `config` filters ids at all (min_count > 1 or probability in (0, 1)).
bool AdmissionEnabled(const proto::AdmissionConfig& config);

// Counters per sketch row of each table shard's filter: 4 rows of 2^15 16-bit
// counters, 256 KiB a shard (16 MiB for 64 shards).
inline constexpr uint32_t kAdmissionSketchWidth = 1u << 15;

// Count-min sketch of 16-bit saturating counters, `depth` rows of `width`
// counters (width a power of two). Estimates never undercount; with
// N total additions each estimate overcounts by at most e*N/width with
// probability 1 - e^-depth.
class CountMinSketch {
 public:
  // Requires depth in [1, 8] and width a power of two >= 16.
  CountMinSketch(uint32_t depth, uint32_t width);
  CountMinSketch(const CountMinSketch&) = delete;
  CountMinSketch& operator=(const CountMinSketch&) = delete;

  // Adds one sighting of the item whose 64-bit hash is `hash` (spread well:
  // e.g. eddy::MixKey of the key) and returns its new estimate (conservative
  // update: only the minimal counters grow).
  uint32_t Add(uint64_t hash);
  // The current estimate of `hash`.
  uint32_t Estimate(uint64_t hash) const;
  size_t MemoryBytes() const { return static_cast<size_t>(depth_) * width_ * sizeof(uint16_t); }

 private:
  size_t Index(uint32_t row, uint64_t hash) const;

  const uint32_t depth_;
  const uint32_t width_;
  std::unique_ptr<uint16_t[]> counters_;
};

// Counters of one filter (summed over a table's shards for reporting).
struct AdmissionStats {
  uint64_t admitted = 0;        // ids that got a row through the filter
  uint64_t first_seen = 0;      // ids seen for the first time (sketch estimate was 0)
  uint64_t pending_pushes = 0;  // pushes dropped because their id was not admitted yet
  // Ids seen but not admitted yet (an estimate: the sketch may take two ids for one).
  uint64_t waiting() const { return first_seen > admitted ? first_seen - admitted : 0; }
};

// The admission rule of one table shard. A config with min_count <= 1 and
// probability >= 1 (or unset) admits every id at once (enabled() is false).
class AdmissionFilter {
 public:
  // `sketch_width` counters per sketch row (rounded up to a power of two).
  AdmissionFilter(const proto::AdmissionConfig& config, uint32_t sketch_width);

  bool enabled() const { return enabled_; }
  // Records a sighting of `key` (its MixKey is `hash`), which has no row, and
  // returns whether it is admitted now: at its min_count-th sighting (when
  // min_count > 1), or when the seeded coin of (key, sighting number) falls
  // below `probability` (when in (0, 1)).
  bool Admit(uint64_t key, uint64_t hash);
  // Notes that a row was created for `key` another way (an import), so the
  // counters stay consistent.
  void NoteAdmitted() { ++stats_.admitted; }
  const AdmissionStats& stats() const { return stats_; }
  size_t MemoryBytes() const { return sketch_ ? sketch_->MemoryBytes() : 0; }

 private:
  const bool enabled_;
  const uint32_t min_count_;
  const double probability_;
  const uint64_t seed_;
  std::unique_ptr<CountMinSketch> sketch_;
  AdmissionStats stats_;
};

}  // namespace eddy::server

#endif  // EDDY_SERVER_ADMISSION_H_
