#include "bench/bench_report.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace eddy::bench {
namespace {

void PutDouble(std::string* out, double v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof(v));
}
void PutFloats(std::string* out, const std::vector<float>& v) {
  uint64_t n = v.size();
  out->append(reinterpret_cast<const char*>(&n), sizeof(n));
  if (n > 0) out->append(reinterpret_cast<const char*>(v.data()), n * sizeof(float));
}
bool GetBytes(const std::string& in, size_t* pos, void* dst, size_t n) {
  if (in.size() - *pos < n) return false;
  if (n > 0) std::memcpy(dst, in.data() + *pos, n);
  *pos += n;
  return true;
}
bool GetFloats(const std::string& in, size_t* pos, std::vector<float>* v) {
  uint64_t n = 0;
  if (!GetBytes(in, pos, &n, sizeof(n)) || n > (in.size() - *pos) / sizeof(float)) return false;
  v->resize(n);
  return GetBytes(in, pos, v->data(), n * sizeof(float));
}

}  // namespace

std::string WorkerReport::Serialize() const {
  std::string out;
  PutDouble(&out, sparse_seconds);
  PutDouble(&out, dense_seconds);
  PutFloats(&out, sparse_latency_us);
  PutFloats(&out, dense_latency_us);
  return out;
}

StatusOr<WorkerReport> WorkerReport::Parse(const std::string& bytes) {
  WorkerReport r;
  size_t pos = 0;
  if (!GetBytes(bytes, &pos, &r.sparse_seconds, sizeof(double)) ||
      !GetBytes(bytes, &pos, &r.dense_seconds, sizeof(double)) ||
      !GetFloats(bytes, &pos, &r.sparse_latency_us) ||
      !GetFloats(bytes, &pos, &r.dense_latency_us) || pos != bytes.size()) {
    return InvalidArgumentError("truncated or malformed benchmark report");
  }
  return r;
}

double Percentile(std::vector<float> values, double q) {
  if (values.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(q * values.size()));
  if (rank > 0) --rank;
  rank = std::min(rank, values.size() - 1);
  std::nth_element(values.begin(), values.begin() + rank, values.end());
  return values[rank];
}

void Summary::Add(const WorkerReport& r) {
  if (r.sparse_seconds > 0) sparse_rate_ += r.sparse_latency_us.size() / r.sparse_seconds;
  if (r.dense_seconds > 0) dense_rate_ += r.dense_latency_us.size() / r.dense_seconds;
  sparse_.insert(sparse_.end(), r.sparse_latency_us.begin(), r.sparse_latency_us.end());
  dense_.insert(dense_.end(), r.dense_latency_us.begin(), r.dense_latency_us.end());
}

std::string Summary::Line(const std::string& config, uint64_t keys_per_request, int dim,
                          uint64_t dense_elements, bool fused) const {
  std::string line = "eddy_bench " + config;
  char buf[512];
  if (!sparse_.empty()) {
    // Bytes on the wire per request: keys both ways (once when fused) and values both ways.
    const double bytes = keys_per_request * ((fused ? 8.0 : 16.0) + 8.0 * dim);
    std::snprintf(buf, sizeof(buf),
                  " | sparse: %.0f req/s, %.2f M keys/s, %.0f MB/s, p50 %.2f ms, p99 %.2f ms",
                  sparse_rate_, sparse_rate_ * keys_per_request / 1e6, sparse_rate_ * bytes / 1e6,
                  Percentile(sparse_, 0.5) / 1e3, Percentile(sparse_, 0.99) / 1e3);
    line += buf;
  }
  if (!dense_.empty()) {
    const double bytes = 2.0 * dense_elements * sizeof(float);
    std::snprintf(buf, sizeof(buf),
                  " | dense %.1f MiB: %.0f req/s, %.2f GB/s, p50 %.2f ms, p99 %.2f ms",
                  dense_elements * 4.0 / (1 << 20), dense_rate_, dense_rate_ * bytes / 1e9,
                  Percentile(dense_, 0.5) / 1e3, Percentile(dense_, 0.99) / 1e3);
    line += buf;
  }
  return line;
}

}  // namespace eddy::bench
