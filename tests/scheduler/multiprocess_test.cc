// Multi-process tests: real scheduler, server and worker processes over loopback,
// started with --role, and a job launched through mpirun.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "tests/testing/subprocess.h"

namespace eddy {
namespace {

using testing::Subprocess;
using namespace std::chrono_literals;

const std::string kBin = EDDY_BIN_DIR;
const std::vector<std::string> kMpiEnv = {
    "OMPI_ALLOW_RUN_AS_ROOT=1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1", "OMPI_MCA_btl=self,tcp",
    "OMPI_MCA_btl_tcp_if_include=lo", "OMPI_MCA_oob_tcp_if_include=lo",
    "OMPI_MCA_rmaps_base_oversubscribe=1",
    // Open MPI's plugins are unloaded before LeakSanitizer runs:
    // their process-lifetime allocations cannot be suppressed by name.
    "ASAN_OPTIONS=detect_leaks=0"};

std::vector<std::string> Args(std::string binary, std::vector<std::string> args) {
  args.insert(args.begin(), kBin + "/" + binary);
  return args;
}

// Starts a scheduler with --role=scheduler and returns it with its endpoint.
std::unique_ptr<Subprocess> StartScheduler(const std::string& binary,
                                           std::vector<std::string> flags, std::string* endpoint) {
  flags.push_back("--role=scheduler");
  auto p = std::make_unique<Subprocess>(Args(binary, flags));
  auto line = p->WaitForOutput("scheduler endpoint: ", 30s);
  if (!line) {
    ADD_FAILURE() << "scheduler printed no endpoint:\n" << p->output();
    return p;
  }
  const std::string prefix = "scheduler endpoint: ";
  *endpoint = line->substr(line->find(prefix) + prefix.size());
  return p;
}

TEST(MultiProcessTest, EveryAcknowledgedPushIsAppliedExactlyOnce) {
  const std::vector<std::string> job = {"--num_servers=2", "--num_workers=2", "--check_pushes=3000",
                                        "--check_inflight=32", "--heartbeat_interval_ms=200"};
  std::string endpoint;
  auto scheduler = StartScheduler("eddy_check_job", job, &endpoint);
  ASSERT_FALSE(endpoint.empty());
  std::vector<std::unique_ptr<Subprocess>> nodes;
  for (const char* role : {"--role=server", "--role=server", "--role=worker", "--role=worker"}) {
    std::vector<std::string> flags = job;
    flags.push_back(role);
    flags.push_back("--scheduler=" + endpoint);
    nodes.push_back(std::make_unique<Subprocess>(Args("eddy_check_job", flags)));
  }
  auto code = scheduler->WaitForExit(180s);
  ASSERT_TRUE(code.has_value()) << scheduler->output();
  EXPECT_EQ(*code, 0) << scheduler->output();
  EXPECT_TRUE(scheduler->WaitForOutput("monotonicity violations: OK", 1s)) << scheduler->output();
  for (auto& node : nodes) {
    auto c = node->WaitForExit(60s);
    ASSERT_TRUE(c.has_value()) << node->output();
    EXPECT_EQ(*c, 0) << node->output();
  }
}

TEST(MultiProcessTest, JobLaunchedThroughMpirun) {
  std::vector<std::string> args = {
      "/usr/bin/mpirun", "--oversubscribe",    "-np", "5", kBin + "/eddy_check_job",
      "--num_servers=2", "--check_pushes=1000"};
  Subprocess mpirun(args, kMpiEnv);
  auto code = mpirun.WaitForExit(240s);
  ASSERT_TRUE(code.has_value()) << mpirun.output();
  EXPECT_EQ(*code, 0) << mpirun.output();
  EXPECT_NE(mpirun.output().find("monotonicity violations: OK"), std::string::npos)
      << mpirun.output();
  EXPECT_NE(mpirun.output().find("2 server(s) and 2 worker(s)"), std::string::npos)
      << mpirun.output();
}

TEST(MultiProcessTest, BenchmarkRunsUnderMpirunAndPrintsOneSummary) {
  std::vector<std::string> args = {"/usr/bin/mpirun",
                                   "--oversubscribe",
                                   "-np",
                                   "3",
                                   kBin + "/eddy_bench",
                                   "--keys_per_request=1000",
                                   "--vocab=100000",
                                   "--warmup_s=0.2",
                                   "--duration_s=1",
                                   "--mode=both",
                                   "--dense_mb=1"};
  Subprocess mpirun(args, kMpiEnv);
  auto code = mpirun.WaitForExit(240s);
  ASSERT_TRUE(code.has_value()) << mpirun.output();
  EXPECT_EQ(*code, 0) << mpirun.output();
  const std::string out = mpirun.output();
  auto first = out.find("eddy_bench servers=1 workers=1");
  ASSERT_NE(first, std::string::npos) << out;
  EXPECT_EQ(out.find("eddy_bench servers=", first + 1), std::string::npos)
      << "more than one summary:\n"
      << out;
  EXPECT_NE(out.find("M keys/s"), std::string::npos) << out;
  EXPECT_NE(out.find("GB/s"), std::string::npos) << out;
}

TEST(MultiProcessTest, KilledServerIsNamedAndTheJobFailsWithinTheBound) {
  const std::vector<std::string> job = {
      "--num_servers=2",        "--num_workers=1",  "--heartbeat_interval_ms=100",
      "--node_timeout_ms=1500", "--duration_s=120", "--warmup_s=0",
      "--keys_per_request=100", "--vocab=10000"};
  std::string endpoint;
  auto scheduler = StartScheduler("eddy_bench", job, &endpoint);
  ASSERT_FALSE(endpoint.empty());
  std::vector<std::unique_ptr<Subprocess>> servers;
  for (int i = 0; i < 2; ++i) {
    std::vector<std::string> flags = job;
    flags.push_back("--role=server");
    flags.push_back("--scheduler=" + endpoint);
    servers.push_back(std::make_unique<Subprocess>(Args("eddy_bench", flags)));
  }
  std::vector<std::string> worker_flags = job;
  worker_flags.push_back("--role=worker");
  worker_flags.push_back("--scheduler=" + endpoint);
  Subprocess worker(Args("eddy_bench", worker_flags));
  ASSERT_TRUE(scheduler->WaitForOutput("cluster up", 60s)) << scheduler->output();
  // Which process became server 1 is the scheduler's choice: find it by pid.
  auto line = scheduler->WaitForOutput("server 1 (", 5s);
  ASSERT_TRUE(line);
  Subprocess* victim = nullptr;
  for (auto& s : servers) {
    if (line->find(":" + std::to_string(s->pid()) + ",") != std::string::npos) victim = s.get();
  }
  ASSERT_NE(victim, nullptr) << *line;
  const auto killed_at = std::chrono::steady_clock::now();
  victim->Kill(SIGKILL);
  auto code = scheduler->WaitForExit(30s);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - killed_at).count();
  ASSERT_TRUE(code.has_value()) << scheduler->output();
  EXPECT_NE(*code, 0);
  // Detection within the timeout plus one check interval, with slack for a loaded machine.
  EXPECT_LT(seconds, 1.5 + 5.0);
  auto reported = scheduler->WaitForOutput("stopped answering", 1s);
  ASSERT_TRUE(reported) << scheduler->output();
  EXPECT_NE(reported->find("server 1 ("), std::string::npos) << *reported;
  auto named = scheduler->output().find("server 1 (");
  EXPECT_NE(named, std::string::npos);
  auto worker_code = worker.WaitForExit(30s);
  ASSERT_TRUE(worker_code.has_value()) << worker.output();
  EXPECT_NE(*worker_code, 0);
  for (auto& s : servers) {
    if (s.get() == victim) continue;
    auto c = s->WaitForExit(30s);
    ASSERT_TRUE(c.has_value()) << s->output();
    EXPECT_NE(*c, 0) << s->output();
  }
}

TEST(MultiProcessTest, ContradictoryFlagsAreRefusedWithAClearMessage) {
  struct Case {
    std::vector<std::string> flags;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"--role=server"}, "needs --scheduler"},
      {{"--local", "--role=worker"}, "contradict each other"},
      {{"--role=leader"}, "unknown --role"},
      {{"--scheduler=tcp://127.0.0.1:1"}, "--scheduler is only for"},
      {{"--num_servers=0"}, "--num_servers must be at least 1"},
      {{"--heartbeat_interval_ms=1000", "--node_timeout_ms=500"},
       "must be larger than --heartbeat_interval_ms"},
      {{"--mode=sideways"}, "--mode must be"},
      {{"--staleness=-2"}, "--staleness must be"},
      {{"--aggregate=sum"}, "use it with --staleness=0"},
      {{"--aggregate=max", "--staleness=0"}, "--aggregate must be none, sum or mean"},
      {{"--tables=x:dim=4"}, "do not pass --tables"},
  };
  for (const Case& c : cases) {
    Subprocess p(Args("eddy_bench", c.flags));
    auto code = p.WaitForExit(30s);
    ASSERT_TRUE(code.has_value());
    EXPECT_EQ(*code, 1) << p.output();
    EXPECT_NE(p.output().find(c.message), std::string::npos) << "flags " << c.flags[0] << ":\n"
                                                             << p.output();
  }
  Subprocess bad_table(Args("eddy_check_job", {"--server_shards=0"}));
  auto code = bad_table.WaitForExit(30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1) << bad_table.output();
}

TEST(MultiProcessTest, HelpListsEddysFlags) {
  Subprocess p(Args("eddy_bench", {"--help"}));
  auto code = p.WaitForExit(30s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 0);
  const std::string out = p.output();
  for (const char* flag :
       {"--num_servers", "--tables", "--node_timeout_ms", "--preset", "--inflight"}) {
    EXPECT_NE(out.find(flag), std::string::npos) << flag << " missing from --help:\n" << out;
  }
  EXPECT_EQ(out.find("--log_dir"), std::string::npos) << "library flags belong to --helpfull";
}

TEST(MultiProcessTest, MpirunWithoutRoomForAWorkerExplainsWhat) {
  std::vector<std::string> args = {"/usr/bin/mpirun",    "--oversubscribe", "-np",           "2",
                                   kBin + "/eddy_bench", "--num_servers=1", "--duration_s=1"};
  Subprocess mpirun(args, kMpiEnv);
  auto code = mpirun.WaitForExit(120s);
  ASSERT_TRUE(code.has_value()) << mpirun.output();
  EXPECT_NE(*code, 0);
  EXPECT_NE(mpirun.output().find("use mpirun -np 3 or more"), std::string::npos) << mpirun.output();
}

}  // namespace
}  // namespace eddy
