// The scheduler's live-metrics channel: workers' Client::ReportMetrics payloads
// reach SchedulerOptions::on_progress (periodically and once at the end) and
// WorkerProgram::progress through RunJob; bad METRICS do not disturb the job.
#include "scheduler/scheduler_node.h"

#include <gtest/gtest.h>

#include <charconv>
#include <random>

#include "common/message.h"
#include "common/mutex.h"
#include "common/table_config.h"
#include "job/launcher.h"
#include "tests/testing/local_cluster.h"

namespace eddy::scheduler {
namespace {

using testing::LocalCluster;
using testing::LocalClusterOptions;
using namespace std::chrono_literals;

constexpr auto kWaitLimit = 30s;

// Records every on_progress call. Payloads are decimal counters; it checks that
// each worker's counter never goes backwards from one call to the next.
// Thread-safety: Record() from the scheduler's thread, the rest from the test.
class ProgressLog {
 public:
  using Callback = std::function<void(const scheduler::ProgressInputs&, bool)>;
  Callback AsCallback() {
    return [this](const scheduler::ProgressInputs& in, bool final) {
      Record(in.worker_metrics, final);
    };
  }

  void Record(const std::vector<std::string>& latest, bool final) {
    MutexLock lock(&mu_);
    if (finals_ > 0) ++calls_after_final_;
    if (final) {
      ++finals_;
      final_ = latest;
    } else {
      ++progress_calls_;
    }
    if (latest.size() != counters_.size()) ++malformed_;
    for (size_t w = 0; w < latest.size() && w < counters_.size(); ++w) {
      int64_t value = -1;  // no report yet
      if (!latest[w].empty()) {
        const char* end = latest[w].data() + latest[w].size();
        auto [ptr, ec] = std::from_chars(latest[w].data(), end, value);
        if (ec != std::errc() || ptr != end) {
          ++malformed_;
          continue;
        }
      }
      if (value < counters_[w]) ++regressions_;
      counters_[w] = value;
    }
    last_ = latest;
    cv_.NotifyAll();
  }

  // Blocks until an on_progress call (periodic or final) carried exactly `want`;
  // false if none did within kWaitLimit.
  bool WaitFor(const std::vector<std::string>& want) {
    const auto deadline = std::chrono::steady_clock::now() + kWaitLimit;
    MutexLock lock(&mu_);
    while (last_ != want) {
      if (!cv_.WaitUntil(&mu_, deadline)) return last_ == want;
    }
    return true;
  }

  void SetWorkers(int n) {
    MutexLock lock(&mu_);
    counters_.assign(n, -1);
  }
  int finals() const {
    MutexLock lock(&mu_);
    return finals_;
  }
  int progress_calls() const {
    MutexLock lock(&mu_);
    return progress_calls_;
  }
  std::vector<std::string> final_metrics() const {
    MutexLock lock(&mu_);
    return final_;
  }
  // Calls after the final one, counters that went backwards, unparsable payloads.
  int violations() const {
    MutexLock lock(&mu_);
    return calls_after_final_ + regressions_ + malformed_;
  }

 private:
  mutable Mutex mu_;
  CondVar cv_;
  std::vector<int64_t> counters_ GUARDED_BY(mu_);
  std::vector<std::string> last_ GUARDED_BY(mu_);
  std::vector<std::string> final_ GUARDED_BY(mu_);
  int finals_ GUARDED_BY(mu_) = 0;
  int progress_calls_ GUARDED_BY(mu_) = 0;
  int calls_after_final_ GUARDED_BY(mu_) = 0;
  int regressions_ GUARDED_BY(mu_) = 0;
  int malformed_ GUARDED_BY(mu_) = 0;
};

std::unique_ptr<LocalCluster> StartCluster(LocalClusterOptions o, ProgressLog& log) {
  log.SetWorkers(o.num_workers);
  o.on_progress = log.AsCallback();
  auto c = LocalCluster::Start(o);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? std::move(c).value() : nullptr;
}

TEST(SchedulerProgressTest, SeesEveryWorkersLatestMetricsAndAFinalCallWithTheLastOnes) {
  ProgressLog log;  // outlives the cluster, whose scheduler calls it
  LocalClusterOptions o;
  o.num_servers = 1;
  o.num_workers = 2;
  o.tables = "emb:dim=1,opt=sgd,lr=1";
  o.progress_interval = 5ms;
  auto cluster = StartCluster(o, log);
  ASSERT_TRUE(cluster);
  constexpr int kReports = 2000;
  const std::vector<uint64_t> keys = {1, 2, 3};
  const std::vector<float> grads(keys.size(), -1.0f);
  {
    std::vector<std::jthread> workers;
    for (int w = 0; w < 2; ++w) {
      workers.emplace_back([&, w] {
        worker::Client& client = cluster->client(w);
        for (int i = 1; i <= kReports; ++i) {
          // Round trips now and then, so that reports are sent as well as replaced.
          if (i % 50 == 0) {
            ASSERT_TRUE(client.Push("emb", keys, grads)->Wait().ok());
          }
          client.ReportMetrics(std::to_string(i));
        }
      });
    }
  }
  const std::string last = std::to_string(kReports);
  ASSERT_TRUE(log.WaitFor({last, last}));
  EXPECT_GE(log.progress_calls(), 1);
  EXPECT_EQ(log.finals(), 0);
  // One more report each, right before the workers finish: the final call has it.
  const std::string after = std::to_string(kReports + 1);
  cluster->client(0).ReportMetrics(after);
  cluster->client(1).ReportMetrics(after);
  ASSERT_TRUE(cluster->Shutdown().ok());
  EXPECT_EQ(log.finals(), 1);
  EXPECT_EQ(log.final_metrics(), (std::vector<std::string>{after, after}));
  EXPECT_EQ(log.violations(), 0);
  EXPECT_EQ(cluster->scheduler().latest_metrics(), (std::vector<std::string>{after, after}));
  const SchedulerStats stats = cluster->scheduler().stats();
  EXPECT_GE(stats.metrics_received, 4u);
  EXPECT_EQ(stats.metrics_ignored, 0u);
  EXPECT_EQ(stats.metrics_oversized, 0u);
  // The job has ended: further reports are dropped quietly.
  cluster->client(0).ReportMetrics("1");
}

TEST(SchedulerProgressTest, WorkerProgramGetsEveryWorkersLastReportThroughRunJob) {
  constexpr int kWorkers = 3, kReports = 500;
  ProgressLog log;
  log.SetWorkers(kWorkers);
  job::JobOptions job;
  job.mode = job::LaunchMode::kLocal;
  job.scheduler_options.num_servers = 1;
  job.scheduler_options.num_workers = kWorkers;
  job.scheduler_options.heartbeat_interval = 200ms;
  job.scheduler_options.node_timeout = 5000ms;
  auto tables = ParseTableSpecs("emb:dim=1,opt=sgd,lr=1");
  ASSERT_TRUE(tables.ok()) << tables.status();
  job.scheduler_options.tables = *tables;
  job.server_options.num_threads = 1;
  job::WorkerProgram program;
  program.run = [&](worker::Client& client) -> StatusOr<std::string> {
    const std::vector<uint64_t> keys = {static_cast<uint64_t>(client.worker_id())};
    const std::vector<float> grads = {-1.0f};
    for (int i = 1; i <= kReports; ++i) {
      if (i % 25 == 0) RETURN_IF_ERROR(client.Push("emb", keys, grads)->Wait());
      client.ReportMetrics(std::to_string(i));
    }
    // The launcher calls Finish() right after this returns.
    return std::string("done");
  };
  int finals_before_summary = -1;
  program.summarize = [&](const std::vector<std::string>& reports) {
    finals_before_summary = log.finals();
    EXPECT_EQ(reports, std::vector<std::string>(kWorkers, "done"));
    return OkStatus();
  };
  program.progress = log.AsCallback();
  program.progress_interval = 5ms;
  EXPECT_EQ(job::RunJob(job, program), 0);
  EXPECT_EQ(finals_before_summary, 1);
  EXPECT_EQ(log.finals(), 1);
  EXPECT_EQ(log.final_metrics(), std::vector<std::string>(kWorkers, std::to_string(kReports)));
  EXPECT_EQ(log.violations(), 0);
}

TEST(SchedulerProgressTest, LostWorkerKeepsItsLastMetrics) {
  ProgressLog log;
  LocalClusterOptions o;
  o.num_servers = 1;
  o.num_workers = 3;
  o.tolerate_worker_failures = true;
  o.heartbeat_interval = 50ms;
  o.node_timeout = 600ms;
  o.progress_interval = 5ms;
  auto cluster = StartCluster(o, log);
  ASSERT_TRUE(cluster);
  cluster->client(2).ReportMetrics("7");
  ASSERT_TRUE(log.WaitFor({"", "", "7"}));
  cluster->LoseWorker(2);
  cluster->client(0).ReportMetrics("5");
  cluster->client(1).ReportMetrics("6");
  // Ends once the scheduler has declared worker 2 lost.
  ASSERT_TRUE(cluster->Shutdown().ok());
  EXPECT_EQ(log.finals(), 1);
  EXPECT_EQ(log.final_metrics(), (std::vector<std::string>{"5", "6", "7"}));
  EXPECT_EQ(log.violations(), 0);
}

TEST(SchedulerProgressTest, OversizedMetricsAreDroppedAndCounted) {
  ProgressLog log;
  LocalClusterOptions o;
  o.num_servers = 1;
  o.num_workers = 1;
  o.max_metrics_bytes = 1000;
  o.progress_interval = 5ms;
  auto cluster = StartCluster(o, log);
  ASSERT_TRUE(cluster);
  worker::Client& client = cluster->client(0);
  client.ReportMetrics("1");
  ASSERT_TRUE(log.WaitFor({"1"}));
  client.ReportMetrics(std::string(1001, '9'));  // above the scheduler's limit
  // A barrier goes to the scheduler after the report, so it has been handled by
  // the time the barrier is released.
  ASSERT_TRUE(client.Barrier("after the oversized report").ok());
  EXPECT_EQ(cluster->scheduler().stats().metrics_oversized, 1u);
  EXPECT_EQ(cluster->scheduler().latest_metrics(), std::vector<std::string>{"1"});
  // Above what any client sends (beyond ZeroMQ's message limit it would cut the
  // worker's connection): dropped on the worker.
  client.ReportMetrics(std::string(worker::Client::kMaxMetricsBytes + 1, '9'));
  client.ReportMetrics("2");
  ASSERT_TRUE(log.WaitFor({"2"}));
  EXPECT_TRUE(client.health().ok());
  const SchedulerStats stats = cluster->scheduler().stats();
  EXPECT_EQ(stats.metrics_oversized, 1u);
  EXPECT_EQ(stats.metrics_received, 2u);
  ASSERT_TRUE(cluster->Shutdown().ok());
  EXPECT_EQ(log.final_metrics(), std::vector<std::string>{"2"});
  EXPECT_EQ(log.violations(), 0);
}

TEST(SchedulerProgressTest, MetricsFromAnUnregisteredSocketDoNotDisturbTheJob) {
  ProgressLog log;
  LocalClusterOptions o;
  o.num_servers = 1;
  o.num_workers = 2;
  o.tables = "emb:dim=1,opt=sgd,lr=1";
  o.progress_interval = 5ms;
  auto cluster = StartCluster(o, log);
  ASSERT_TRUE(cluster);
  cluster->client(0).ReportMetrics("10");
  cluster->client(1).ReportMetrics("20");
  ASSERT_TRUE(log.WaitFor({"10", "20"}));

  zmq::socket_t intruder(cluster->context(), zmq::socket_type::dealer);
  intruder.set(zmq::sockopt::linger, 0);
  intruder.connect(cluster->scheduler_endpoint());
  auto send_frames = [&](const std::vector<std::string>& frames) {
    for (size_t i = 0; i < frames.size(); ++i) {
      intruder.send(zmq::buffer(frames[i]),
                    i + 1 < frames.size() ? zmq::send_flags::sndmore : zmq::send_flags::none);
    }
  };
  auto metrics = [](int sender, std::string payload) {
    Message m{MakeHeader(proto::METRICS), {}, {}};
    m.header.set_sender(sender);
    m.header.set_payload(std::move(payload));
    return m;
  };
  // Well-formed METRICS claiming to come from the workers or from nobody: ignored.
  int ignored = 0;
  for (int sender : {0, 1, -1, 12345}) {
    ASSERT_TRUE(SendMessage(intruder, metrics(sender, "666")).ok());
    ++ignored;
  }
  ASSERT_TRUE(SendMessage(intruder, metrics(0, std::string(size_t{17} << 20, '6'))).ok());
  ++ignored;
  // Another protocol version: refused.
  Message other_version = metrics(0, "666");
  other_version.header.set_protocol_version(kProtocolVersion + 1);
  ASSERT_TRUE(SendMessage(intruder, other_version).ok());
  // Wrong frame counts and random bytes: dropped.
  const std::string header = metrics(0, "666").header.SerializeAsString();
  send_frames({header});
  send_frames({header, ""});
  send_frames({header, "", "", ""});
  std::mt19937_64 rng(5);
  for (int round = 0; round < 100; ++round) {
    const int count = std::vector<int>{1, 2, 4, 5}[round % 4];  // 3 frames might parse
    std::vector<std::string> frames;
    for (int f = 0; f < count; ++f) {
      std::string bytes(rng() % 100, '\0');
      for (char& ch : bytes) ch = static_cast<char>(rng());
      frames.push_back(std::move(bytes));
    }
    send_frames(frames);
  }
  // The scheduler answers a late registration with ABORT; as it handles one
  // peer's messages in order, everything above has been handled by then.
  proto::NodeInfo info;
  info.set_role(proto::WORKER);
  Message reg{MakeHeader(proto::REGISTER), {}, {}};
  reg.header.set_sender(-1);
  reg.header.set_payload(info.SerializeAsString());
  ASSERT_TRUE(SendMessage(intruder, reg).ok());
  bool refused = false;
  while (!refused) {
    zmq::pollitem_t item = {intruder.handle(), 0, ZMQ_POLLIN, 0};
    ASSERT_EQ(zmq::poll(&item, 1, std::chrono::milliseconds(kWaitLimit)), 1)
        << "no answer to the late registration";
    StatusOr<Message> reply = RecvMessage(intruder);
    ASSERT_TRUE(reply.ok()) << reply.status();
    ASSERT_EQ(reply->header.type(), proto::ABORT);
    refused = reply->header.status_message().find("already has") != std::string::npos;
  }
  EXPECT_EQ(cluster->scheduler().stats().metrics_ignored, static_cast<uint64_t>(ignored));
  EXPECT_EQ(cluster->scheduler().latest_metrics(), (std::vector<std::string>{"10", "20"}));

  // The job goes on undisturbed.
  const std::vector<uint64_t> keys = {1, 2};
  ASSERT_TRUE(cluster->client(0).Push("emb", keys, std::vector<float>{-1, -1})->Wait().ok());
  auto pull = cluster->client(1).Pull("emb", keys);
  ASSERT_TRUE(pull->Wait().ok());
  EXPECT_EQ(std::vector<float>(pull->values().begin(), pull->values().end()),
            (std::vector<float>{1, 1}));
  cluster->client(0).ReportMetrics("11");
  cluster->client(1).ReportMetrics("21");
  ASSERT_TRUE(cluster->Shutdown().ok());
  EXPECT_EQ(log.finals(), 1);
  EXPECT_EQ(log.final_metrics(), (std::vector<std::string>{"11", "21"}));
  EXPECT_EQ(log.violations(), 0);
}

TEST(SchedulerOptionsTest, ProgressIntervalMustBePositive) {
  SchedulerOptions o;
  auto tables = ParseTableSpecs("emb:dim=1");
  ASSERT_TRUE(tables.ok()) << tables.status();
  o.tables = *tables;
  o.on_progress = [](const scheduler::ProgressInputs&, bool) {};
  o.progress_interval = 0ms;
  EXPECT_EQ(ValidateSchedulerOptions(o).code(), StatusCode::kInvalidArgument);
  o.progress_interval = 1ms;
  EXPECT_TRUE(ValidateSchedulerOptions(o).ok());
  o.on_progress = nullptr;
  o.progress_interval = 0ms;  // unused without a callback
  EXPECT_TRUE(ValidateSchedulerOptions(o).ok());
}

}  // namespace
}  // namespace eddy::scheduler

namespace eddy::scheduler {
namespace {

// The servers' heartbeats carry their reports to the progress callback:
// sparse rows and feature admission, summed over the servers.
class ServerReportLog {
 public:
  void Record(const ProgressInputs& in) {
    MutexLock lock(&mu_);
    rows_ = admitted_ = waiting_ = 0;
    for (const proto::ServerReport& r : in.servers) {
      rows_ += r.sparse_rows();
      admitted_ += r.admitted_ids();
      waiting_ += r.waiting_ids();
    }
    cv_.NotifyAll();
  }
  // Waits until a report shows exactly these sums; false after 30 s.
  bool WaitFor(uint64_t rows, uint64_t admitted, uint64_t waiting) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    MutexLock lock(&mu_);
    while (rows_ != rows || admitted_ != admitted || waiting_ != waiting) {
      if (!cv_.WaitUntil(&mu_, deadline)) return false;
    }
    return true;
  }

 private:
  Mutex mu_;
  CondVar cv_;
  uint64_t rows_ GUARDED_BY(mu_) = 0, admitted_ GUARDED_BY(mu_) = 0, waiting_ GUARDED_BY(mu_) = 0;
};

TEST(SchedulerProgressTest, ServerReportsShowRowsAndFeatureAdmission) {
  ServerReportLog log;  // outlives the cluster
  LocalClusterOptions o;
  o.num_servers = 2;
  o.num_workers = 1;
  o.tables = "emb:dim=1,opt=sgd,lr=1,admit_after=2";
  o.heartbeat_interval = 20ms;
  o.progress_interval = 5ms;
  o.on_progress = [&log](const ProgressInputs& in, bool) { log.Record(in); };
  auto cluster = LocalCluster::Start(o);
  ASSERT_TRUE(cluster.ok()) << cluster.status();
  std::vector<uint64_t> keys(100);
  for (uint64_t i = 0; i < keys.size(); ++i) keys[i] = i * 7919 + 1;
  const std::vector<float> grads(keys.size(), 1.0f);
  worker::Client& client = (*cluster)->client(0);
  ASSERT_TRUE(client.Push("emb", keys, grads)->Wait().ok());
  EXPECT_TRUE(log.WaitFor(/*rows=*/0, /*admitted=*/0, /*waiting=*/100));
  ASSERT_TRUE(client.Push("emb", keys, grads)->Wait().ok());
  EXPECT_TRUE(log.WaitFor(/*rows=*/100, /*admitted=*/100, /*waiting=*/0));
  ASSERT_TRUE((*cluster)->Shutdown().ok());
}

}  // namespace
}  // namespace eddy::scheduler
