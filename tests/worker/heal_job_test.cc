// Self-healing with real processes: a job launched one process per role loses a
// server or a worker to SIGKILL mid-run (also while a version is written); a
// replacement started with the same flags takes its place, every server rolls
// back to the last committed version and the workers go on from its positions.
// Under ASP every row is trained exactly once; under BSP the final parameters
// equal an uninterrupted job's, bit for bit.
#include <signal.h>

#include <fstream>
#include <iostream>
#include <memory>
#include <random>

#include "model_store/materialize.h"
#include "model_store/version_dir.h"
#include "tests/worker/role_job.h"
#include "tests/worker/train_job_fixture.h"

namespace eddy {
namespace {

class HealJobTest : public TrainJobTest {
 protected:
  std::vector<std::string> Flags(const std::string& data, const std::string& policy,
                                 const std::string& models) {
    std::vector<std::string> f = kSmallModel;
    f.insert(f.end(), {"--num_servers=2", "--num_workers=2", "--data=" + data,
                       "--policy=" + policy, "--batch_size=100", "--model_dir=" + models,
                       "--snapshot_every=150ms", "--keep_versions=100",
                       "--recovery_timeout_ms=30000"});
    return f;
  }

  // The processes of RunAndKill, in start order after the scheduler.
  static constexpr int kServer1 = 1, kWorker1 = 3;

  // Runs the job one process per role; kills a server with SIGKILL once
  // version `kill_after` is committed and starts a replacement with the same
  // flags. Returns the scheduler's exit code and output.
  std::pair<int, std::string> RunAndKillAServer(const std::vector<std::string>& flags,
                                                uint64_t kill_after) {
    return RunAndKill(flags, "version " + std::to_string(kill_after) + " (", kServer1);
  }
  std::pair<int, std::string> RunAndKillAServerAfter(const std::vector<std::string>& flags,
                                                     const std::string& text) {
    return RunAndKill(flags, text, kServer1);
  }
  // As above, once the scheduler's output has `text`, the node `victim`
  // (kServer1 or kWorker1).
  // Without `replace`, no replacement is started.
  std::pair<int, std::string> RunAndKill(const std::vector<std::string>& flags,
                                         const std::string& text, int victim,
                                         bool replace = true) {
    RoleJob job(flags);
    if (!job.Start()) return {-1, job.scheduler().output()};
    const bool cut = job.scheduler().WaitForOutput(text, 120s).has_value();
    EXPECT_TRUE(cut) << job.scheduler().output();
    job.node(victim).Kill(SIGKILL);
    if (replace) job.Replace(victim);  // the supervisor's restart
    auto code = job.Wait(240s);
    EXPECT_TRUE(code.has_value()) << job.scheduler().output();
    return {code.value_or(-1), job.scheduler().output()};
  }

  // The final model of the uninterrupted BSP job on `data` (threads, --local).
  std::string Uninterrupted(const std::string& data) {
    const std::string whole = (dir_ / "whole").string();
    auto w = Flags(data, "bsp", whole);
    w.push_back("--local");
    auto [code, out] = Train(w);
    EXPECT_EQ(code, 0) << out;
    return whole;
  }

  // "rows" + "skipped_rows" of the final metrics record.
  static uint64_t FinalRowsAndSkipped(const std::string& metrics) {
    auto [rows, skipped] = FinalRows(metrics);
    return rows + skipped;
  }

  static uint64_t Newest(const std::string& root) {
    auto v = model_store::ListVersions(root);
    EXPECT_TRUE(v.ok() && !v->empty()) << root;
    return v.ok() && !v->empty() ? v->back() : 0;
  }

  // The newest versions of the two jobs hold the same model, bit for bit.
  static void ExpectSameNewest(const std::string& a, const std::string& b) {
    auto m1 = model_store::Materialize(a, Newest(a));
    auto m2 = model_store::Materialize(b, Newest(b));
    ASSERT_TRUE(m1.ok() && m2.ok());
    ExpectSameModel(*m1, *m2);
  }
};

TEST_F(HealJobTest, AspServerKilledMidRunEveryRowTrainedOnce) {
  constexpr int kRows = 300000;
  const std::string data = Generate("stream.tsv", kRows);
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  auto flags = Flags(data, "asp", (dir_ / "models").string());
  flags.push_back("--metrics_out=" + metrics);
  auto [code, out] = RunAndKillAServer(flags, 3);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("recovered from the loss of server"), std::string::npos) << out;
  // Noticed from the closed connection, not after the 10 s heartbeat timeout.
  EXPECT_NE(out.find("its connection closed"), std::string::npos) << out;
  // Rows trained after the rollback plus the rows the version held: every row once.
  EXPECT_EQ(FinalRowsAndSkipped(metrics), static_cast<uint64_t>(kRows));
  std::ifstream in(metrics);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_NE(all.find("\"event\":\"recovery\",\"phase\":\"done\""), std::string::npos);
}

// A worker that had already finished its stream trained rows after the last
// version too: the rollback undoes them, so it runs again from the version.
TEST_F(HealJobTest, AWorkerThatFinishedRunsAgainAfterTheRollback) {
  constexpr int kRows = 40000;
  const std::string data = Generate("stream.tsv", kRows);
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  auto flags = Flags(data, "asp", (dir_ / "models").string());
  // Worker 1 is slow: worker 0 finishes first; the server dies after that.
  flags.insert(flags.end(), {"--metrics_out=" + metrics, "--straggler=1:5"});
  auto [code, out] = RunAndKillAServerAfter(flags, ") finished");
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("recovered from the loss of server"), std::string::npos) << out;
  EXPECT_EQ(FinalRowsAndSkipped(metrics), static_cast<uint64_t>(kRows));
  // Worker 0 finished twice: before the loss and after the rollback.
  int n = 0;
  for (size_t at = out.find("worker 0 ("); at != std::string::npos;
       at = out.find("worker 0 (", at + 1)) {
    const size_t close = out.find(')', at);
    n += close != std::string::npos && out.compare(close, 10, ") finished") == 0;
  }
  EXPECT_EQ(n, 2) << out;
}

TEST_F(HealJobTest, BspServerKilledMidRunEndsWithTheUninterruptedParameters) {
  constexpr int kRows = 60000;
  const std::string data = Generate("stream.tsv", kRows);
  const std::string whole = Uninterrupted(data), healed = (dir_ / "healed").string();
  auto [c2, o2] = RunAndKillAServer(Flags(data, "bsp", healed), 3);
  ASSERT_EQ(c2, 0) << o2;
  EXPECT_NE(o2.find("recovered from the loss of server"), std::string::npos) << o2;
  ExpectSameNewest(whole, healed);
}

TEST_F(HealJobTest, BspServerKilledWhileAVersionIsWrittenEndsWithTheUninterruptedParameters) {
  constexpr int kRows = 60000;
  const std::string data = Generate("stream.tsv", kRows);
  const std::string whole = Uninterrupted(data), healed = (dir_ / "healed").string();
  // Killed as soon as version 4 is asked for: its cut or its files are under
  // way; it fails and the job rolls back to version 3.
  auto flags = Flags(data, "bsp", healed);
  flags.push_back("--vmodule=version_coordinator=1");
  auto [c2, o2] = RunAndKill(flags, "taking version 4", kServer1);
  ASSERT_EQ(c2, 0) << o2;
  EXPECT_NE(o2.find("rolling back to version 3"), std::string::npos) << o2;
  EXPECT_NE(o2.find("recovered from the loss of server"), std::string::npos) << o2;
  ExpectSameNewest(whole, healed);
}

TEST_F(HealJobTest, AspWorkerKilledMidRunEveryRowTrainedOnce) {
  constexpr int kRows = 300000;
  const std::string data = Generate("stream.tsv", kRows);
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  auto flags = Flags(data, "asp", (dir_ / "models").string());
  flags.push_back("--metrics_out=" + metrics);
  auto [code, out] = RunAndKill(flags, "version 3 (", kWorker1);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("recovered from the loss of worker"), std::string::npos) << out;
  EXPECT_NE(out.find("registered as the replacement of worker"), std::string::npos) << out;
  EXPECT_EQ(FinalRowsAndSkipped(metrics), static_cast<uint64_t>(kRows));
}

// --tolerate_worker_failures and nobody restarts the lost worker: after a short
// wait a survivor runs its slot too, from the version's positions.
TEST_F(HealJobTest, AspWorkerKilledWithoutReplacementASurvivorTakesOverItsShare) {
  constexpr int kRows = 200000;
  const std::string data = Generate("stream.tsv", kRows);
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  auto flags = Flags(data, "asp", (dir_ / "models").string());
  flags.insert(flags.end(), {"--metrics_out=" + metrics, "--tolerate_worker_failures"});
  auto [code, out] = RunAndKill(flags, "version 3 (", kWorker1, /*replace=*/false);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("takes over its share"), std::string::npos) << out;
  EXPECT_NE(out.find("recovered from the loss of worker"), std::string::npos) << out;
  EXPECT_EQ(FinalRowsAndSkipped(metrics), static_cast<uint64_t>(kRows));
}

TEST_F(HealJobTest, BspWorkerKilledMidRunEndsWithTheUninterruptedParameters) {
  constexpr int kRows = 60000;
  const std::string data = Generate("stream.tsv", kRows);
  const std::string whole = Uninterrupted(data), healed = (dir_ / "healed").string();
  auto [c2, o2] = RunAndKill(Flags(data, "bsp", healed), "version 3 (", kWorker1);
  ASSERT_EQ(c2, 0) << o2;
  EXPECT_NE(o2.find("recovered from the loss of worker"), std::string::npos) << o2;
  ExpectSameNewest(whole, healed);
}

// Lost before the job's first version: every server goes back to the initial
// state and every worker to where it started.
TEST_F(HealJobTest, BspServerKilledBeforeTheFirstVersionEndsWithTheUninterruptedParameters) {
  constexpr int kRows = 60000;
  const std::string data = Generate("stream.tsv", kRows);
  const std::string whole = Uninterrupted(data), healed = (dir_ / "healed").string();
  auto flags = Flags(data, "bsp", healed);
  flags.push_back("--snapshot_every=0");  // the only version is the last one
  auto [c2, o2] = RunAndKill(flags, " rows/s |", kServer1);
  ASSERT_EQ(c2, 0) << o2;
  EXPECT_NE(o2.find("rolling back to the initial state"), std::string::npos) << o2;
  ExpectSameNewest(whole, healed);
}

TEST_F(HealJobTest, AspWorkerKilledBeforeTheFirstVersionEveryRowTrainedOnce) {
  constexpr int kRows = 200000;
  const std::string data = Generate("stream.tsv", kRows);
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  auto flags = Flags(data, "asp", (dir_ / "models").string());
  flags.insert(flags.end(), {"--metrics_out=" + metrics, "--snapshot_every=0"});
  auto [code, out] = RunAndKill(flags, " rows/s |", kWorker1);
  ASSERT_EQ(code, 0) << out;
  EXPECT_NE(out.find("rolling back to the initial state"), std::string::npos) << out;
  EXPECT_EQ(FinalRowsAndSkipped(metrics), static_cast<uint64_t>(kRows));
}

// A server that stalls (SIGSTOP) past the heartbeat timeout is declared lost;
// when it answers again (SIGCONT) it takes its own place back and the job heals
// without any replacement.
TEST_F(HealJobTest, AStalledServerDeclaredLostTakesItsPlaceBackWhenItAnswersAgain) {
  constexpr int kRows = 200000;
  const std::string data = Generate("stream.tsv", kRows);
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  auto flags = Flags(data, "asp", (dir_ / "models").string());
  flags.insert(flags.end(), {"--metrics_out=" + metrics, "--heartbeat_interval_ms=200",
                             "--node_timeout_ms=1500"});
  RoleJob job(flags);
  ASSERT_TRUE(job.Start());
  Subprocess& scheduler = job.scheduler();
  ASSERT_TRUE(scheduler.WaitForOutput("version 3 (", 120s).has_value()) << scheduler.output();
  job.node(kServer1).Kill(SIGSTOP);
  EXPECT_TRUE(scheduler.WaitForOutput("stopped answering: no heartbeat", 60s).has_value())
      << scheduler.output();
  job.node(kServer1).Kill(SIGCONT);
  auto code = job.Wait(240s);
  ASSERT_TRUE(code.has_value()) << scheduler.output();
  ASSERT_EQ(*code, 0) << scheduler.output();
  EXPECT_NE(scheduler.output().find("answers again; it takes its place back"), std::string::npos)
      << scheduler.output();
  EXPECT_EQ(FinalRowsAndSkipped(metrics), static_cast<uint64_t>(kRows));
}

// Chaos: for about a minute, a random server or worker is killed with SIGKILL a
// random 1-3 s after the previous recovery ended, and restarted at once (as
// --supervise or systemd would). The job finishes and every row is trained
// once. EDDY_CHAOS_SEED=<n> replays a run's choices.
TEST_F(HealJobTest, ChaosRandomKillsOfServersAndWorkersEveryRowTrainedOnce) {
  constexpr int kRows = 2000000;
  constexpr auto kChaos = 60s;
  const char* env_seed = std::getenv("EDDY_CHAOS_SEED");
  const uint64_t seed = env_seed != nullptr ? std::strtoull(env_seed, nullptr, 10)
                                            : std::random_device()();
  SCOPED_TRACE("EDDY_CHAOS_SEED=" + std::to_string(seed));
  std::mt19937_64 random(seed);
  const std::string data = Generate("stream.tsv", kRows);
  const std::string metrics = (dir_ / "metrics.jsonl").string();
  auto flags = Flags(data, "asp", (dir_ / "models").string());
  flags.insert(flags.end(), {"--metrics_out=" + metrics, "--heartbeat_interval_ms=200"});
  RoleJob job(flags);
  ASSERT_TRUE(job.Start());
  Subprocess& scheduler = job.scheduler();
  // A loss before the first version has nothing to roll back to.
  ASSERT_TRUE(scheduler.WaitForOutput("version 1 (", 120s).has_value()) << scheduler.output();
  const auto chaos_end = std::chrono::steady_clock::now() + kChaos;
  int kills = 0;
  std::string victims;
  while (std::chrono::steady_clock::now() < chaos_end) {
    // A random pause, ended early by the end of the job.
    const auto pause = std::chrono::milliseconds(1000 + random() % 2000);
    if (scheduler.WaitForExit(pause).has_value()) break;
    const size_t victim = random() % job.size();
    job.node(victim).Kill(SIGKILL);
    job.Replace(victim);
    ++kills;
    victims += job.role(victim) + std::to_string(victim % 2) + " ";
    // Each kill is one recovery (one epoch): the next comes after it ends.
    const std::string recovered = "(epoch " + std::to_string(kills) + "); the workers go on";
    if (!scheduler.WaitForOutput(recovered, 90s).has_value()) {
      ASSERT_TRUE(scheduler.WaitForExit(1s).has_value())
          << "no recovery after kill " << kills << " (" << victims << ")\n" << scheduler.output();
      break;  // the job had ended
    }
  }
  auto code = job.Wait(300s);
  std::cout << "chaos: " << kills << " kill(s): " << victims << std::endl;
  ASSERT_TRUE(code.has_value()) << scheduler.output();
  ASSERT_EQ(*code, 0) << "kills: " << victims << "\n" << scheduler.output();
  EXPECT_GE(kills, 10) << victims;
  EXPECT_EQ(FinalRowsAndSkipped(metrics), static_cast<uint64_t>(kRows)) << victims;
}

}  // namespace
}  // namespace eddy
