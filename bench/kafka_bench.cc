// Kafka input throughput for one worker: produces --rows generated Criteo rows
// into a fresh topic with --partitions partitions once, then times, --repeat
// times, KafkaSource (bounded, every partition) alone and KafkaSource ->
// ParsedStream with the criteo parser, and prints rows/s.
//   eval "$(scripts/kafka.sh start)"
//   build/bin/kafka_bench --bootstrap=$KAFKA_BOOTSTRAP --rows=2000000 --partitions=4
//   build/bin/kafka_bench ... --rows_per_message=100   # rows=lines messages
#include <gflags/gflags.h>
#include <glog/logging.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "worker/data/kafka.h"
#include "worker/data/read_ahead_source.h"
#include "worker/data/parsed_stream.h"
#include "worker/data/parser.h"
#include "worker/generator/generator.h"

DEFINE_string(bootstrap, "", "Kafka bootstrap address (default: $KAFKA_BOOTSTRAP).");
DEFINE_string(topic, "", "Topic to create and fill (default: a fresh eddy-bench-<pid>-<time>).");
DEFINE_int64(rows, 2000000, "Rows to produce.");
DEFINE_int32(partitions, 4, "Partitions of the topic.");
DEFINE_int32(rows_per_message, 1, "Rows per message (> 1: rows=lines).");
DEFINE_int32(repeat, 3, "Timed reads of the whole topic.");
DEFINE_bool(read_ahead, true,
            "Source + parsing: read on a thread of its own (ReadAheadSource, as eddy_train "
            "does for Kafka); false: the parser thread reads too.");
DEFINE_string(rdkafka, "",
              "Extra URI parameters for the reads, e.g. "
              "'rdkafka.fetch.wait.max.ms=10&rdkafka.queued.min.messages=500000'.");

namespace {

using Clock = std::chrono::steady_clock;
using eddy::worker::KafkaUri;

double Since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

int Fail(const std::string& message) {
  std::fprintf(stderr, "kafka_bench: %s\n", message.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  google::InitGoogleLogging(argv[0]);
  std::string bootstrap = FLAGS_bootstrap;
  if (bootstrap.empty() && std::getenv("KAFKA_BOOTSTRAP") != nullptr) {
    bootstrap = std::getenv("KAFKA_BOOTSTRAP");
  }
  if (bootstrap.empty()) return Fail("no broker: pass --bootstrap or set KAFKA_BOOTSTRAP");
  if (FLAGS_rows < 1 || FLAGS_partitions < 1 || FLAGS_rows_per_message < 1 || FLAGS_repeat < 1) {
    return Fail("--rows, --partitions, --rows_per_message and --repeat must be >= 1");
  }
  std::string topic = FLAGS_topic;
  if (topic.empty()) {
    topic = "eddy-bench-" + std::to_string(getpid()) + "-" +
            std::to_string(std::chrono::system_clock::now().time_since_epoch().count());
  }
  const bool lines = FLAGS_rows_per_message > 1;
  std::string query = std::string("?end=latest") + (lines ? "&rows=lines" : "");
  if (!FLAGS_rdkafka.empty()) query += "&" + FLAGS_rdkafka;
  eddy::StatusOr<KafkaUri> uri =
      eddy::worker::ParseKafkaUri("kafka://" + bootstrap + "/" + topic + query);
  if (!uri.ok()) return Fail(uri.status().ToString());
  const auto timeout = std::chrono::milliseconds(60000);

  // Produce once.
  if (eddy::Status s = eddy::worker::CreateKafkaTopic(*uri, FLAGS_partitions, timeout); !s.ok()) {
    return Fail(s.ToString());
  }
  // A --topic that already holds exactly this many messages is reused.
  const int64_t messages = (FLAGS_rows + FLAGS_rows_per_message - 1) / FLAGS_rows_per_message;
  auto marks = eddy::worker::KafkaWatermarks(*uri, timeout);
  if (!marks.ok()) return Fail(marks.status().ToString());
  int64_t present = 0;
  for (const auto& [p, lh] : *marks) present += lh.second - lh.first;
  if (present == messages) {
    std::printf("reusing %s: %lld messages\n", topic.c_str(), static_cast<long long>(present));
  } else if (present != 0) {
    return Fail("topic " + topic + " holds " + std::to_string(present) + " messages, not " +
                std::to_string(messages) + "; use another --topic");
  } else {
    auto producer = eddy::worker::KafkaProducer::Open(*uri, timeout);
    if (!producer.ok()) return Fail(producer.status().ToString());
    eddy::worker::GeneratorOptions options;
    eddy::worker::ClickStreamGenerator gen(options);
    std::string message;
    float p = 0;
    int in_message = 0;
    const Clock::time_point start = Clock::now();
    for (int64_t i = 0; i < FLAGS_rows; ++i) {
      gen.AppendRow(&message, &p);
      if (++in_message < FLAGS_rows_per_message && i + 1 < FLAGS_rows) continue;
      message.pop_back();  // the last '\n'
      if (eddy::Status s = (*producer)->Send(-1, message); !s.ok()) return Fail(s.ToString());
      message.clear();
      in_message = 0;
    }
    if (eddy::Status s = (*producer)->Flush(timeout); !s.ok()) return Fail(s.ToString());
    std::printf("produced rows=%lld messages=%llu partitions=%d into %s in %.2f s\n",
                static_cast<long long>(FLAGS_rows),
                static_cast<unsigned long long>((*producer)->sent()), FLAGS_partitions,
                topic.c_str(), Since(start));
  }

  std::vector<int32_t> all(FLAGS_partitions);
  for (int32_t i = 0; i < FLAGS_partitions; ++i) all[i] = i;
  auto open = [&]() {
    eddy::worker::KafkaSourceOptions options;
    options.uri = *uri;
    options.partitions = all;
    options.broker_timeout = timeout;
    return eddy::worker::KafkaSource::Open(options);
  };
  std::vector<double> source_rates, parsed_rates;
  for (int r = 0; r < FLAGS_repeat; ++r) {
    // The source alone.
    {
      const Clock::time_point start = Clock::now();
      auto source = open();
      if (!source.ok()) return Fail(source.status().ToString());
      eddy::worker::Line line;
      uint64_t rows = 0, bytes = 0;
      for (;;) {
        eddy::StatusOr<bool> more = (*source)->Next(&line);
        if (!more.ok()) return Fail(more.status().ToString());
        if (!*more) break;
        ++rows;
        bytes += line.text.size();
      }
      const double s = Since(start);
      if (rows != static_cast<uint64_t>(FLAGS_rows)) {
        return Fail("source read " + std::to_string(rows) + " rows, not " +
                    std::to_string(FLAGS_rows));
      }
      source_rates.push_back(static_cast<double>(rows) / s);
      std::printf("run %d: KafkaSource           %8.3f M rows/s (%.2f s, %.0f MB/s)\n", r,
                  source_rates.back() / 1e6, s, static_cast<double>(bytes) / s / 1e6);
    }
    // Source + parsing (ParsedStream's thread reads and parses).
    {
      const Clock::time_point start = Clock::now();
      auto source = open();
      if (!source.ok()) return Fail(source.status().ToString());
      auto parser = eddy::worker::MakeParser("criteo");
      if (!parser.ok()) return Fail(parser.status().ToString());
      std::unique_ptr<eddy::worker::LineSource> input = std::move(source).value();
      if (FLAGS_read_ahead) {
        input = std::make_unique<eddy::worker::ReadAheadSource>(std::move(input));
      }
      eddy::worker::ParsedStream stream(std::move(input), std::move(parser).value());
      uint64_t rows = 0;
      for (;;) {
        auto batch = stream.NextBatch();
        if (!batch.ok()) return Fail(batch.status().ToString());
        if (!batch->has_value()) break;
        rows += (*batch)->size();
      }
      const double s = Since(start);
      if (rows != static_cast<uint64_t>(FLAGS_rows) || stream.bad_rows() != 0) {
        return Fail("parsed " + std::to_string(rows) + " rows (" +
                    std::to_string(stream.bad_rows()) + " bad), not " + std::to_string(FLAGS_rows));
      }
      parsed_rates.push_back(static_cast<double>(rows) / s);
      std::printf("run %d: KafkaSource+criteo    %8.3f M rows/s (%.2f s)\n", r,
                  parsed_rates.back() / 1e6, s);
    }
  }
  std::sort(source_rates.begin(), source_rates.end());
  std::sort(parsed_rates.begin(), parsed_rates.end());
  std::printf(
      "median of %d: source %.3f M rows/s, source+parse %.3f M rows/s "
      "(rows_per_message=%d, partitions=%d, read_ahead=%d)\n",
      FLAGS_repeat, source_rates[source_rates.size() / 2] / 1e6,
      parsed_rates[parsed_rates.size() / 2] / 1e6, FLAGS_rows_per_message, FLAGS_partitions,
      FLAGS_read_ahead ? 1 : 0);
  return 0;
}
