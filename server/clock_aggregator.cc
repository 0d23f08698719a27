#include "server/clock_aggregator.h"

#include <algorithm>

namespace eddy::server {

void ClockAggregator::Add(const Message& push) {
  const proto::Header& h = push.header;
  ClockSums& sums = clocks_[h.clock()];
  sums.senders.insert(h.sender());
  const Buffer values = push.values.Aligned(alignof(float));
  std::span<const float> g = values.As<float>();
  if (h.type() == proto::PUSH_DENSE) {
    DenseSum& d = sums.dense[h.table()];
    if (d.sums.empty()) {
      d.offset = h.offset();
      d.sums.assign(g.size(), 0.0f);
    }
    for (size_t i = 0; i < g.size() && i < d.sums.size(); ++i) d.sums[i] += g[i];
    return;
  }
  SparseSum& s = sums.sparse[h.table()];
  s.dim = h.value_dim();
  const Buffer key_buf = push.keys.Aligned(alignof(uint64_t));
  std::span<const uint64_t> keys = key_buf.As<uint64_t>();
  for (size_t i = 0; i < keys.size(); ++i) {
    auto [it, inserted] = s.index.try_emplace(keys[i], static_cast<uint32_t>(s.keys.size()));
    if (inserted) {
      s.keys.push_back(keys[i]);
      s.sums.resize(s.sums.size() + s.dim, 0.0f);
    }
    float* dst = s.sums.data() + static_cast<size_t>(it->second) * s.dim;
    const float* src = g.data() + i * s.dim;
    for (uint32_t d = 0; d < s.dim; ++d) dst[d] += src[d];
  }
}

std::vector<Message> ClockAggregator::TakeBefore(int64_t clock, float scale) {
  return Take(clock, scale, false);
}

std::vector<Message> ClockAggregator::TakeMeanBefore(int64_t clock) {
  return Take(clock, 1.0f, true);
}

std::vector<Message> ClockAggregator::Take(int64_t clock, float scale, bool mean) {
  std::vector<Message> out;
  while (!clocks_.empty() && clocks_.begin()->first < clock) {
    ClockSums sums = std::move(clocks_.begin()->second);
    if (mean) scale = 1.0f / static_cast<float>(std::max<size_t>(1, sums.senders.size()));
    const int64_t c = clocks_.begin()->first;
    clocks_.erase(clocks_.begin());
    for (auto& [table, s] : sums.sparse) {
      if (scale != 1.0f) {
        for (float& v : s.sums) v *= scale;
      }
      Message m{MakeHeader(proto::PUSH), Buffer::FromVector(std::move(s.keys)),
                Buffer::FromVector(std::move(s.sums))};
      m.header.set_table(table);
      m.header.set_clock(c);
      m.header.set_num_keys(m.keys.size() / sizeof(uint64_t));
      m.header.set_value_dim(s.dim);
      m.header.set_dtype(proto::FLOAT32);
      out.push_back(std::move(m));
    }
    for (auto& [table, d] : sums.dense) {
      if (scale != 1.0f) {
        for (float& v : d.sums) v *= scale;
      }
      Message m{MakeHeader(proto::PUSH_DENSE), {}, Buffer::FromVector(std::move(d.sums))};
      m.header.set_table(table);
      m.header.set_clock(c);
      m.header.set_offset(d.offset);
      m.header.set_value_count(m.values.size() / sizeof(float));
      m.header.set_dtype(proto::FLOAT32);
      out.push_back(std::move(m));
    }
  }
  return out;
}

}  // namespace eddy::server
