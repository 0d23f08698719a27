// eddy_gen: writes a seeded synthetic click stream (Criteo TSV) to a file,
// stdout or a Kafka topic, and optionally the true click probability of each
// row and a report of the best achievable AUC / logloss. Thin main: flags ->
// GeneratorOptions -> library.
#include <gflags/gflags.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "worker/data/kafka.h"
#include "worker/generator/generator.h"
#include "worker/metrics/auc.h"
#include "worker/metrics/metrics.h"

DEFINE_int64(rows, 1000000, "Number of rows to generate (>= 0).");
DEFINE_uint64(seed, 1, "Random seed; the same flags and seed give byte-identical output.");
DEFINE_string(out, "-",
              "Output TSV file, - for stdout, or kafka://host:port/topic[?rows=lines...] to "
              "produce each row as a Kafka message (rows=lines: --rows_per_message rows per "
              "message), round robin over the topic's partitions.");
DEFINE_int32(rows_per_message, 1,
             "Kafka output with rows=lines in the URI: rows per message (the last message may "
             "hold fewer).");
DEFINE_int32(kafka_partitions, 0,
             "Kafka output: create the topic with this many partitions if it does not exist "
             "(0 = the topic must exist).");
DEFINE_int32(kafka_timeout_s, 60,
             "Kafka output: how long to wait for the broker (connecting, a full queue, the "
             "final flush).");
DEFINE_double(rows_per_s, 0,
              "Pace the output at this many rows per second (token bucket on the steady clock; "
              "0 = as fast as possible).");
DEFINE_string(truth_out, "",
              "If set, writes the true click probability of each row here, one per line.");
DEFINE_int64(drift_every, 500000, "Rows between concept drifts (0 = no drift).");
DEFINE_double(drift_fraction, 0.1, "Fraction of each vocabulary changed at each drift, in [0, 1].");
DEFINE_double(ctr, 0.1, "Target click-through rate, in [0.001, 0.9].");
DEFINE_double(signal, 1.0, "Scales all effects: higher = more predictable stream, in (0, 10].");
DEFINE_uint32(max_vocab, 1000000, "Cap on every categorical vocabulary size (>= 10).");
DEFINE_string(preset, "",
              "A Criteo-like stream: criteo_a (CTR 3.5%, Zipf ~1.1), criteo_b (CTR 25%, smaller "
              "vocabularies), criteo_c (CTR 3%, Zipf ~1.2, stronger drift). Sets --ctr, "
              "--drift_every, --drift_fraction and --signal unless they are given explicitly. "
              "Empty = the default stream.");
DEFINE_bool(report, false,
            "Print rows, CTR, throughput and the best achievable AUC and logloss (from the true "
            "probabilities). "
            "Goes to stderr when --out=-, else stdout.");

namespace {

int Fail(const std::string& message) {
  std::fprintf(stderr, "eddy_gen: %s\n", message.c_str());
  return 1;
}

// A FILE* opened for writing (stdout for "-"), closed with error checking.
class Output {
 public:
  bool Open(const std::string& path) {
    path_ = path;
    if (path == "-") {
      file_ = stdout;
      return true;
    }
    file_ = std::fopen(path.c_str(), "wb");
    return file_ != nullptr;
  }
  bool Write(std::string* buf) {
    const bool ok = std::fwrite(buf->data(), 1, buf->size(), file_) == buf->size();
    buf->clear();
    return ok;
  }
  bool Flush() { return std::fflush(file_) == 0; }
  bool Close() {
    if (file_ == nullptr) return true;
    const bool ok = file_ == stdout ? std::fflush(file_) == 0 : std::fclose(file_) == 0;
    file_ = nullptr;
    return ok;
  }
  ~Output() { Close(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::FILE* file_ = nullptr;
};

// Paces the output: Take() returns at once while the bucket holds a token and
// otherwise waits until one accrues (rate per second, bursts of 50 ms worth).
class TokenBucket {
 public:
  explicit TokenBucket(double rate)
      : rate_(rate), burst_(std::max(1.0, rate / 20)), last_(std::chrono::steady_clock::now()) {}
  // True if a token was free; false if the caller must Wait() first.
  bool TryTake() {
    Refill();
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }
  // Waits until a token has accrued (does not take it).
  void Wait() const {
    const double missing = 1 - tokens_;
    std::this_thread::sleep_until(last_ +
                                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                      std::chrono::duration<double>(missing / rate_)));
  }

 private:
  void Refill() {
    const auto now = std::chrono::steady_clock::now();
    tokens_ =
        std::min(burst_, tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
    last_ = now;
  }
  const double rate_;
  const double burst_;
  double tokens_ = 1;
  std::chrono::steady_clock::time_point last_;
};

// Kafka output: rows gathered into messages and produced round robin.
class KafkaOutput {
 public:
  bool Open(const std::string& uri_text, std::string* error) {
    eddy::StatusOr<eddy::worker::KafkaUri> uri = eddy::worker::ParseKafkaUri(uri_text);
    if (!uri.ok()) {
      *error = "bad --out: " + uri.status().message();
      return false;
    }
    uri_ = *uri;
    if (FLAGS_rows_per_message < 1) {
      *error = "--rows_per_message must be >= 1";
      return false;
    }
    if (FLAGS_rows_per_message > 1 && !uri_.several_rows_per_message) {
      *error =
          "--rows_per_message > 1 needs rows=lines in the --out URI (" + uri_text + "?rows=lines)";
      return false;
    }
    rows_per_message_ = uri_.several_rows_per_message ? FLAGS_rows_per_message : 1;
    if (FLAGS_kafka_partitions < 0) {
      *error = "--kafka_partitions must be >= 0";
      return false;
    }
    if (FLAGS_kafka_partitions > 0) {
      eddy::Status s = eddy::worker::CreateKafkaTopic(uri_, FLAGS_kafka_partitions, timeout());
      if (s.code() == eddy::StatusCode::kAlreadyExists) {
        std::fprintf(stderr, "eddy_gen: %s; using it as it is\n", s.message().c_str());
      } else if (!s.ok()) {
        *error = s.message();
        return false;
      }
    }
    auto producer = eddy::worker::KafkaProducer::Open(uri_, timeout());
    if (!producer.ok()) {
      *error = producer.status().message();
      if (producer.status().code() == eddy::StatusCode::kNotFound) {
        *error += "; create it, or pass --kafka_partitions=N to create it";
      }
      return false;
    }
    producer_ = std::move(producer).value();
    return true;
  }
  // `row` ends with '\n'.
  bool Add(std::string_view row, std::string* error) {
    message_.append(row);
    if (++rows_in_message_ < rows_per_message_) return true;
    return Send(error);
  }
  bool Finish(std::string* error) {
    if (rows_in_message_ > 0 && !Send(error)) return false;
    eddy::Status s = producer_->Flush(timeout());
    if (!s.ok()) *error = s.message();
    return s.ok();
  }
  uint64_t messages() const { return producer_ ? producer_->sent() : 0; }

 private:
  static std::chrono::milliseconds timeout() {
    return std::chrono::milliseconds(int64_t{1000} * std::max(1, FLAGS_kafka_timeout_s));
  }
  bool Send(std::string* error) {
    if (!message_.empty() && message_.back() == '\n') message_.pop_back();
    eddy::Status s = producer_->Send(-1, message_);
    message_.clear();
    rows_in_message_ = 0;
    if (!s.ok()) *error = s.message();
    return s.ok();
  }

  eddy::worker::KafkaUri uri_;
  std::unique_ptr<eddy::worker::KafkaProducer> producer_;
  int rows_per_message_ = 1;
  int rows_in_message_ = 0;
  std::string message_;
};

}  // namespace

int main(int argc, char** argv) {
  gflags::SetUsageMessage(
      "Writes a synthetic click stream in Criteo TSV format.\n"
      "  eddy_gen --rows=2000000 --out=/tmp/g.tsv --truth_out=/tmp/g.truth --report\n"
      "  eddy_gen --preset=criteo_a --rows=500000 --out=/tmp/a.tsv --report\n"
      "  eddy_gen --rows=1000000 --out=kafka://127.0.0.1:9092/clicks --kafka_partitions=4 "
      "--rows_per_s=20000");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  if (argc > 1) return Fail(std::string("unexpected argument: ") + argv[1]);
  if (FLAGS_rows < 0) return Fail("--rows must be >= 0");
  if (FLAGS_drift_every < 0) return Fail("--drift_every must be >= 0");
  if (FLAGS_out.empty()) return Fail("--out must be a path, - or kafka://host:port/topic");
  if (FLAGS_rows_per_s < 0) return Fail("--rows_per_s must be >= 0");

  eddy::worker::GeneratorOptions options;
  if (!FLAGS_preset.empty()) {
    if (eddy::Status s = eddy::worker::ApplyPreset(FLAGS_preset, &options); !s.ok())
      return Fail("bad flag --preset: " + s.message());
  }
  // Without a preset every flag applies; with one, only those given explicitly.
  auto given = [](const char* flag) {
    return FLAGS_preset.empty() || !gflags::GetCommandLineFlagInfoOrDie(flag).is_default;
  };
  options.seed = FLAGS_seed;
  if (given("ctr")) options.ctr = FLAGS_ctr;
  if (given("drift_every")) options.drift_every = static_cast<uint64_t>(FLAGS_drift_every);
  if (given("drift_fraction")) options.drift_fraction = FLAGS_drift_fraction;
  if (given("signal")) options.signal = FLAGS_signal;
  options.max_vocab = FLAGS_max_vocab;
  if (eddy::Status s = options.Validate(); !s.ok()) return Fail("bad flag: " + s.message());

  Output out, truth;
  std::unique_ptr<KafkaOutput> kafka;
  if (eddy::worker::IsKafkaUri(FLAGS_out)) {
    kafka = std::make_unique<KafkaOutput>();
    std::string error;
    if (!kafka->Open(FLAGS_out, &error)) return Fail(error);
  } else if (!out.Open(FLAGS_out)) {
    return Fail("cannot open --out=" + FLAGS_out + ": " + std::strerror(errno));
  }
  if (!FLAGS_truth_out.empty() && !truth.Open(FLAGS_truth_out)) {
    return Fail("cannot open --truth_out=" + FLAGS_truth_out + ": " + std::strerror(errno));
  }

  const auto start = std::chrono::steady_clock::now();
  eddy::worker::ClickStreamGenerator gen(options);
  constexpr size_t kFlushBytes = 4 << 20;
  std::string buf, truth_buf;
  buf.reserve(kFlushBytes + 4096);
  truth_buf.reserve(kFlushBytes / 8 + 64);
  std::vector<float> probs, labels;
  if (FLAGS_report) {
    // The report keeps every row's truth and label (8 bytes a row) for the exact AUC.
    const size_t reserve = static_cast<size_t>(std::min<int64_t>(FLAGS_rows, int64_t{1} << 26));
    probs.reserve(reserve);
    labels.reserve(reserve);
  }
  const bool want_truth = !FLAGS_truth_out.empty();
  std::unique_ptr<TokenBucket> bucket;
  if (FLAGS_rows_per_s > 0) bucket = std::make_unique<TokenBucket>(FLAGS_rows_per_s);
  auto next_progress = start + std::chrono::seconds(1);
  std::string error;
  for (int64_t i = 0; i < FLAGS_rows; ++i) {
    if (bucket && !bucket->TryTake()) {
      // Out of tokens: hand over what is buffered, then wait for the next one.
      if (!kafka && (!out.Write(&buf) || !out.Flush())) {
        return Fail("write to " + out.path() + " failed: " + std::strerror(errno));
      }
      while (!bucket->TryTake()) bucket->Wait();
    }
    if ((i & 1023) == 0 && std::chrono::steady_clock::now() >= next_progress) {
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "eddy_gen: %lld of %lld rows, %.0f rows/s, %.0f s\n",
                   static_cast<long long>(i), static_cast<long long>(FLAGS_rows),
                   static_cast<double>(i) / s, s);
      next_progress += std::chrono::seconds(1);
    }
    float p = 0;
    const size_t row_begin = buf.size();
    const int label = gen.AppendRow(&buf, &p);
    if (kafka) {
      if (!kafka->Add(std::string_view(buf).substr(row_begin), &error)) return Fail(error);
      buf.clear();
    }
    if (want_truth) eddy::worker::AppendProbabilityLine(p, &truth_buf);
    if (FLAGS_report) {
      probs.push_back(p);
      labels.push_back(static_cast<float>(label));
    }
    if (!kafka && buf.size() >= kFlushBytes && !out.Write(&buf)) {
      return Fail("write to " + out.path() + " failed: " + std::strerror(errno));
    }
    if (truth_buf.size() >= kFlushBytes / 8 && !truth.Write(&truth_buf)) {
      return Fail("write to " + truth.path() + " failed: " + std::strerror(errno));
    }
  }
  if (kafka) {
    if (!kafka->Finish(&error)) return Fail(error);
  } else if (!out.Write(&buf) || !out.Close()) {
    return Fail("write to " + out.path() + " failed: " + std::strerror(errno));
  }
  if (want_truth && (!truth.Write(&truth_buf) || !truth.Close())) {
    return Fail("write to " + truth.path() + " failed: " + std::strerror(errno));
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  if (FLAGS_report) {
    std::FILE* r = FLAGS_out == "-" ? stderr : stdout;
    eddy::worker::BinaryMetrics m;
    m.AddBatch(probs, labels);
    std::fprintf(r, "rows=%lld drifts=%llu seconds=%.3f rows_per_s=%.0f\n",
                 static_cast<long long>(FLAGS_rows), static_cast<unsigned long long>(gen.drifts()),
                 seconds, seconds > 0 ? static_cast<double>(FLAGS_rows) / seconds : 0.0);
    uint64_t ids = 0;
    for (uint32_t v : gen.VocabSizes()) ids += v;
    std::fprintf(r, "preset=%s live_ids=%llu\n",
                 options.preset.empty() ? "none" : options.preset.c_str(),
                 static_cast<unsigned long long>(ids));
    std::fprintf(r, "ctr=%.5f mean_true_p=%.5f\n", m.Ctr(), m.MeanPrediction());
    std::fprintf(r, "best_auc=%.5f best_logloss=%.5f (true probabilities as predictions)\n",
                 eddy::worker::ExactAuc(probs, labels), m.LogLoss());
  }
  return 0;
}
