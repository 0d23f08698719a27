#include "server/admission.h"

#include <algorithm>
#include <bit>
#include <cstring>

#include "common/partition.h"

namespace eddy::server {
namespace {

// Seeds of the sketch's rows: each row indexes with a different remix of the hash.
constexpr uint64_t kRowSeeds[8] = {
    0x243f6a8885a308d3ULL, 0x13198a2e03707344ULL, 0xa4093822299f31d0ULL, 0x082efa98ec4e6c89ULL,
    0x452821e638d01377ULL, 0xbe5466cf34e90c6cULL, 0xc0ac29b7c97c50ddULL, 0x3f84d5b5b5470917ULL};
constexpr uint32_t kSketchDepth = 4;

}  // namespace

bool AdmissionEnabled(const proto::AdmissionConfig& config) {
  return config.min_count() > 1 || (config.probability() > 0 && config.probability() < 1);
}

CountMinSketch::CountMinSketch(uint32_t depth, uint32_t width)
    : depth_(std::clamp<uint32_t>(depth, 1, 8)),
      width_(std::bit_ceil(std::max<uint32_t>(width, 16))),
      counters_(std::make_unique<uint16_t[]>(static_cast<size_t>(depth_) * width_)) {
  std::memset(counters_.get(), 0, MemoryBytes());
}

size_t CountMinSketch::Index(uint32_t row, uint64_t hash) const {
  return static_cast<size_t>(row) * width_ + (MixKey(hash ^ kRowSeeds[row]) & (width_ - 1));
}

uint32_t CountMinSketch::Estimate(uint64_t hash) const {
  uint32_t m = UINT16_MAX;
  for (uint32_t r = 0; r < depth_; ++r) m = std::min<uint32_t>(m, counters_[Index(r, hash)]);
  return m;
}

uint32_t CountMinSketch::Add(uint64_t hash) {
  const uint32_t estimate = Estimate(hash);
  if (estimate == UINT16_MAX) return estimate;
  const uint32_t next = estimate + 1;
  for (uint32_t r = 0; r < depth_; ++r) {
    uint16_t& c = counters_[Index(r, hash)];
    if (c < next) c = static_cast<uint16_t>(next);
  }
  return next;
}

AdmissionFilter::AdmissionFilter(const proto::AdmissionConfig& config, uint32_t sketch_width)
    : enabled_(config.min_count() > 1 || (config.probability() > 0 && config.probability() < 1)),
      // Without a count threshold (min_count <= 1) only the coin admits.
      min_count_(config.min_count() > 1 ? config.min_count() : UINT32_MAX),
      probability_(config.probability() > 0 && config.probability() < 1 ? config.probability() : 0),
      seed_(MixKey(config.seed() ^ 0xad3155105eedULL)) {
  if (enabled_) sketch_ = std::make_unique<CountMinSketch>(kSketchDepth, sketch_width);
}

bool AdmissionFilter::Admit(uint64_t key, uint64_t hash) {
  if (!enabled_) return true;
  const uint32_t before = sketch_->Estimate(hash);
  if (before == 0) ++stats_.first_seen;
  const uint32_t count = sketch_->Add(hash);
  bool admit = count >= min_count_;
  if (!admit && probability_ > 0) {
    // A coin per (key, sighting), the same on every run and every server.
    const uint64_t coin = MixKey(MixKey(key ^ seed_) + count);
    admit = static_cast<double>(coin >> 11) * 0x1p-53 < probability_;
  }
  if (admit) {
    ++stats_.admitted;
  } else {
    ++stats_.pending_pushes;
  }
  return admit;
}

}  // namespace eddy::server
