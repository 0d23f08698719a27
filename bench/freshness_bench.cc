// freshness_bench: end-to-end freshness of a live model. A feeder pushes rows of
// a generated click stream into a running eddy_train job over ZeroMQ at a
// fixed rate, noting when each row entered the stream; the job takes a model
// version every --snapshot_every and serves it (--serve_port); a serving
// replica in this process follows the versions. A row's freshness is the time
// from entering the stream to the moment the replica answers with a version
// whose stream position includes it. With --kafka the rows go through a Kafka
// topic instead (produced with a KafkaProducer, read by the job's kafka://
// source): freshness then runs from the produce call to the replica.
//   build/bin/freshness_bench --rows_per_s=20000 --seconds=20 --snapshot_every=250ms
//   build/bin/freshness_bench --kafka=127.0.0.1:9092 --rows_per_s=20000 --seconds=20
#include <gflags/gflags.h>
#include <glog/logging.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <signal.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <thread>
#include <vector>
#include <zmq.hpp>

#include "common/net.h"
#include "serving/replica.h"
#include "worker/data/kafka.h"
#include "worker/generator/generator_source.h"

DEFINE_double(rows_per_s, 20000, "Rows fed into the stream per second.");
DEFINE_double(seconds, 20, "How long to feed rows.");
DEFINE_string(snapshot_every, "250ms", "The job's --snapshot_every.");
DEFINE_int32(full_every, 10, "The job's --full_every.");
DEFINE_string(model_flags, "--model=deepfm --emb_dim=8 --hidden=64,32 --batch_size=256",
              "Model flags passed to eddy_train.");
DEFINE_string(stream, "gen:rows=100000000,drift=0,seed=7,vocab=20000",
              "The generated stream the feeder sends (eddy_train --data syntax).");
DEFINE_string(eddy_train, "", "Path of eddy_train (default: next to this binary).");
DEFINE_string(kafka, "",
              "Kafka bootstrap servers (host:port): feed the rows through a new topic of this "
              "broker instead of ZeroMQ.");
DEFINE_int32(kafka_partitions, 4, "Partitions of the topic (--kafka).");

namespace eddy {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// A free TCP port on 127.0.0.1 (bound then released: the job binds it next).
int FreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    PLOG(FATAL) << "cannot find a free port";
  }
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

std::vector<std::string> Split(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ' ') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

int Main(int argc, char** argv) {
  gflags::SetUsageMessage("freshness of a live model: stream -> training -> version -> replica");
  gflags::ParseCommandLineFlags(&argc, &argv, true);
  std::string train = FLAGS_eddy_train;
  if (train.empty()) train = (fs::path(argv[0]).parent_path() / "eddy_train").string();
  char tmpl[] = "/tmp/eddy_freshness_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string models = dir + "/models";

  zmq::context_t context;
  zmq::socket_t feed(context, zmq::socket_type::push);
  feed.set(zmq::sockopt::sndhwm, 0);
  feed.bind("tcp://127.0.0.1:*");
  const std::string feed_endpoint = feed.get(zmq::sockopt::last_endpoint);
  const int serve_port = FreePort();
  const bool kafka = !FLAGS_kafka.empty();
  const int partitions = kafka ? FLAGS_kafka_partitions : 1;
  std::string data = "zmq:" + feed_endpoint;
  std::unique_ptr<worker::KafkaProducer> producer;
  if (kafka) {
    data = "kafka://" + FLAGS_kafka + "/eddy-freshness-" + std::to_string(getpid());
    auto uri = worker::ParseKafkaUri(data);
    CHECK(uri.ok()) << uri.status();
    Status created = worker::CreateKafkaTopic(*uri, partitions, std::chrono::seconds(30));
    CHECK(created.ok()) << created;
    auto opened = worker::KafkaProducer::Open(*uri, std::chrono::seconds(30));
    CHECK(opened.ok()) << opened.status();
    producer = std::move(opened).value();
  }

  std::vector<std::string> args = {train,
                                   "--local",
                                   "--data=" + data,
                                   "--model_dir=" + models,
                                   "--snapshot_every=" + FLAGS_snapshot_every,
                                   "--full_every=" + std::to_string(FLAGS_full_every),
                                   "--serve_port=" + std::to_string(serve_port),
                                   "--progress_interval_ms=5000",
                                   "--keep_versions=2"};
  for (const std::string& f : Split(FLAGS_model_flags)) args.push_back(f);
  std::string command;
  for (const auto& a : args) command += a + " ";
  std::fprintf(stderr, "job: %s\n", command.c_str());
  const pid_t child = fork();
  if (child == 0) {
    std::vector<char*> cargv;
    for (auto& a : args) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    execv(cargv[0], cargv.data());
    _exit(127);
  }

  serving::ReplicaOptions ro;
  ro.version_endpoint = "tcp://127.0.0.1:" + std::to_string(serve_port);
  ro.cache_dir = dir + "/cache";
  fs::create_directories(ro.cache_dir);
  ro.watch_timeout = std::chrono::milliseconds(1000);
  serving::Replica replica(context, ro);
  auto bound = replica.Bind();
  CHECK(bound.ok()) << bound.status();
  std::jthread serve([&] { replica.Run().IgnoreError(); });

  // The feeder: rows at a fixed rate; sent_at[i] = when row i entered the stream.
  auto spec = worker::ParseGeneratedStreamSpec(FLAGS_stream);
  CHECK(spec.ok()) << spec.status();
  worker::GeneratorSource source(*spec);
  const uint64_t total = static_cast<uint64_t>(FLAGS_rows_per_s * FLAGS_seconds);
  std::vector<Clock::time_point> sent_at(total);
  std::atomic<uint64_t> sent{0};
  // Rows are timed from when the replica is up (it serves the job's first,
  // empty version), so start-up is not counted as staleness.
  CHECK(replica.WaitFor([](const proto::ServeStatus& s) { return s.current_version() > 0; },
                        std::chrono::seconds(120)))
      << "the replica got no version from the job";
  std::jthread feeder([&] {
    const auto start = Clock::now();
    worker::Line line;
    for (uint64_t i = 0; i < total; ++i) {
      const auto due = start + std::chrono::duration_cast<Clock::duration>(
                                   std::chrono::duration<double>(i / FLAGS_rows_per_s));
      std::this_thread::sleep_until(due);  // pacing the load, not synchronisation
      auto ok = source.Next(&line);
      CHECK(ok.ok() && *ok);
      sent_at[i] = Clock::now();
      if (producer) {
        // Row i goes to partition i mod P, at offset i / P (a new topic).
        Status s = producer->Send(static_cast<int32_t>(i % partitions), line.text);
        CHECK(s.ok()) << s;
      } else {
        feed.send(zmq::buffer(line.text.data(), line.text.size()), zmq::send_flags::none);
      }
      sent.store(i + 1, std::memory_order_release);
    }
  });

  // The watcher: each version the replica starts answering with covers rows up
  // to its stream position.
  std::vector<double> freshness;
  uint64_t covered = 0, seen = 0, versions = 0;
  std::vector<uint64_t> covered_in(partitions, 0);  // Kafka: rows covered per partition
  // Rows of a batch the trainer has not filled yet wait for more rows (there is
  // no flush timer), so the tail of the feed may stay unserved: stop watching
  // a few seconds after the feed ends and count only the rows seen served.
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(FLAGS_seconds + 5));
  uint64_t seen_at_start = replica.status().current_version();
  seen = seen_at_start;
  while (covered < total && Clock::now() < deadline) {
    if (!replica.WaitFor(
            [&](const proto::ServeStatus& s) { return s.current_version() > seen; },
            std::chrono::milliseconds(500))) {
      int status = 0;
      if (waitpid(child, &status, WNOHANG) == child) break;
      continue;
    }
    const auto now = Clock::now();
    auto model = replica.serving();
    if (!model) continue;
    seen = model->version();
    ++versions;
    const uint64_t fed = sent.load(std::memory_order_acquire);
    if (kafka) {
      // Partition p's offset o covers rows p, p + P, ..., p + P * (o - 1).
      for (const auto& pos : model->model().manifest.positions()) {
        for (const auto& q : pos.partitions()) {
          const uint64_t p = static_cast<uint64_t>(q.partition());
          if (p >= covered_in.size()) continue;
          for (; static_cast<int64_t>(covered_in[p]) < q.offset(); ++covered_in[p]) {
            const uint64_t row = p + covered_in[p] * static_cast<uint64_t>(partitions);
            if (row >= fed) break;
            freshness.push_back(std::chrono::duration<double>(now - sent_at[row]).count());
            ++covered;
          }
        }
      }
      continue;
    }
    uint64_t position = 0;
    for (const auto& p : model->model().manifest.positions()) position += p.rows_consumed();
    position = std::min(position, fed);
    for (; covered < position; ++covered) {
      freshness.push_back(std::chrono::duration<double>(now - sent_at[covered]).count());
    }
  }
  feeder.join();
  int status = 0;
  if (kafka) {
    // An unbounded topic never ends: stop the job (its exit status is not the result).
    CHECK(producer->Flush(std::chrono::seconds(30)).ok());
    kill(child, SIGTERM);
    waitpid(child, &status, 0);
    status = 0;
  } else {
    feed.send(zmq::message_t(), zmq::send_flags::none);  // end of stream: the job finishes
    waitpid(child, &status, 0);
  }
  replica.Stop();
  serve.join();
  fs::remove_all(dir);

  std::printf("\n# freshness_bench: %s", argv[0]);
  for (int i = 1; i < argc; ++i) std::printf(" %s", argv[i]);
  std::printf("\n# job: %s\n", command.c_str());
  std::printf("rows fed%s: %llu at %.0f rows/s; rows seen served: %zu; versions served: %llu\n",
              kafka ? " through Kafka" : "", static_cast<unsigned long long>(total),
              FLAGS_rows_per_s, freshness.size(),
              static_cast<unsigned long long>(versions));
  std::printf("freshness (stream -> replica answers with it): p50 %.3f s, p90 %.3f s, "
              "p99 %.3f s, max %.3f s\n",
              Quantile(freshness, 0.5), Quantile(freshness, 0.9), Quantile(freshness, 0.99),
              Quantile(freshness, 1.0));
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

}  // namespace
}  // namespace eddy

int main(int argc, char** argv) {
  google::InitGoogleLogging(argv[0]);
  FLAGS_logtostderr = true;
  return eddy::Main(argc, argv);
}
