// --supervise with the real binaries: a server or worker process killed with
// SIGKILL mid-run is restarted by its supervisor (the local job's scheduler process, or
// its mpirun rank) and rejoins through the recovery; the BSP job ends by itself
// with the parameters of an uninterrupted run, bit for bit. Also: the flags it
// needs, and that no node process outlives its supervisor.
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>

#include <memory>

#include "model_store/materialize.h"
#include "model_store/version_dir.h"
#include "tests/worker/train_job_fixture.h"

namespace eddy {
namespace {

class SuperviseJobTest : public TrainJobTest {
 protected:
  std::vector<std::string> Flags(const std::string& data, const std::string& models) {
    std::vector<std::string> f = kSmallModel;
    f.insert(f.end(), {"--num_servers=2", "--data=" + data, "--policy=bsp", "--batch_size=100",
                       "--model_dir=" + models, "--snapshot_every=150ms", "--keep_versions=100",
                       "--recovery_timeout_ms=30000"});
    return f;
  }

  // The pid the supervisor logged for `name` ("server 1") when it started it.
  static pid_t StartedPid(Subprocess& job, const std::string& name) {
    std::optional<std::string> line = job.WaitForOutput("supervisor: started " + name, 60s);
    EXPECT_TRUE(line.has_value()) << job.output();
    const size_t at = line ? line->find("(pid ") : std::string::npos;
    if (at == std::string::npos) return -1;
    return static_cast<pid_t>(std::stoi(line->substr(at + 5)));
  }

  // Waits until process `pid` (not necessarily a child of this one) is gone.
  static bool WaitGone(pid_t pid, std::chrono::milliseconds timeout) {
    const int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (fd < 0) return errno == ESRCH;
    pollfd p{fd, POLLIN, 0};
    const bool gone = poll(&p, 1, static_cast<int>(timeout.count())) == 1;
    close(fd);
    return gone;
  }

  // Starts `argv` (the supervised job), kills its node `name` ("server 1") with
  // SIGKILL once version 3 is committed, and waits for the job's end.
  std::pair<int, std::string> RunAndKill(const std::vector<std::string>& argv,
                                         const std::vector<std::string>& env,
                                         const std::string& name) {
    Subprocess job(argv, env);
    const pid_t node = StartedPid(job, name + " ");
    if (node <= 0) return {-1, job.output()};
    EXPECT_TRUE(job.WaitForOutput("version 3 (", 120s).has_value()) << job.output();
    EXPECT_EQ(kill(node, SIGKILL), 0);
    auto code = job.WaitForExit(240s);
    EXPECT_TRUE(code.has_value()) << job.output();
    return {code.value_or(-1), job.output()};
  }

  static uint64_t Newest(const std::string& root) {
    auto v = model_store::ListVersions(root);
    EXPECT_TRUE(v.ok() && !v->empty()) << root;
    return v.ok() && !v->empty() ? v->back() : 0;
  }

  // The uninterrupted job's final model (threads, no supervisor).
  std::string Uninterrupted(const std::string& data) {
    const std::string whole = (dir_ / "whole").string();
    auto flags = Flags(data, whole);
    flags.insert(flags.end(), {"--local", "--num_workers=2"});
    auto [code, out] = Train(flags);
    EXPECT_EQ(code, 0) << out;
    return whole;
  }

  void ExpectHealed(int code, const std::string& out, const std::string& whole,
                    const std::string& healed, const std::string& name) {
    ASSERT_EQ(code, 0) << out;
    EXPECT_NE(out.find("supervisor: " + name + " (pid "), std::string::npos) << out;
    EXPECT_NE(out.find("was killed by signal 9"), std::string::npos) << out;
    EXPECT_NE(out.find("supervisor: restarted " + name + " (pid "), std::string::npos) << out;
    EXPECT_NE(out.find("recovered from the loss of " + name), std::string::npos) << out;
    auto a = model_store::Materialize(whole, Newest(whole));
    auto b = model_store::Materialize(healed, Newest(healed));
    ASSERT_TRUE(a.ok() && b.ok());
    ExpectSameModel(*a, *b);
  }

  // A supervised BSP job (local mode, or mpirun: rank 0 the scheduler, ranks 1-2
  // the servers, ranks 3-4 the workers) whose node `name` is killed mid-run ends
  // with the uninterrupted job's model.
  void KillAndExpectHealed(bool mpirun, const std::string& name) {
    const std::string data = Generate("stream.tsv", 60000);
    const std::string whole = Uninterrupted(data);
    const std::string healed = (dir_ / "healed").string();
    std::vector<std::string> argv =
        mpirun ? std::vector<std::string>{"/usr/bin/mpirun", "--oversubscribe", "-np", "5",
                                          kBin + "/eddy_train", "--supervise"}
               : std::vector<std::string>{kBin + "/eddy_train", "--local", "--supervise",
                                          "--num_workers=2"};
    for (const auto& f : Flags(data, healed)) argv.push_back(f);
    auto [code, out] = RunAndKill(argv, mpirun ? kMpiEnv : std::vector<std::string>{}, name);
    ExpectHealed(code, out, whole, healed, name);
  }
};

TEST_F(SuperviseJobTest, LocalBspServerKilledIsRestartedAndEndsWithTheUninterruptedModel) {
  KillAndExpectHealed(/*mpirun=*/false, "server 1");
}

TEST_F(SuperviseJobTest, MpirunBspServerKilledIsRestartedAndEndsWithTheUninterruptedModel) {
  KillAndExpectHealed(/*mpirun=*/true, "server 1");
}

TEST_F(SuperviseJobTest, LocalBspWorkerKilledIsRestartedAndEndsWithTheUninterruptedModel) {
  KillAndExpectHealed(/*mpirun=*/false, "worker 1");
}

TEST_F(SuperviseJobTest, MpirunBspWorkerKilledIsRestartedAndEndsWithTheUninterruptedModel) {
  KillAndExpectHealed(/*mpirun=*/true, "worker 1");
}

TEST_F(SuperviseJobTest, NeedsModelDir) {
  auto [code, out] = Train({"--local", "--supervise", "--data=gen:rows=1000"});
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("--supervise needs --model_dir"), std::string::npos) << out;
}

TEST_F(SuperviseJobTest, NotForARoleLaunch) {
  auto [code, out] = Train({"--role=scheduler", "--supervise", "--data=gen:rows=1000",
                            "--model_dir=" + (dir_ / "models").string()});
  EXPECT_EQ(code, 1);
  EXPECT_NE(out.find("--supervise is for local mode and mpirun"), std::string::npos) << out;
}

// A long job (a generated stream that never ends) stopped with SIGTERM: the
// supervisor passes it on, waits for its nodes and ends by that signal.
TEST_F(SuperviseJobTest, SigtermReachesTheNodesAndEndsTheJob) {
  std::vector<std::string> argv = {kBin + "/eddy_train", "--local", "--supervise",
                                   "--num_workers=2"};
  for (const auto& f : Flags("gen:rows=100000000", (dir_ / "models").string())) argv.push_back(f);
  Subprocess job(argv);
  std::vector<pid_t> nodes = {StartedPid(job, "server 0 "), StartedPid(job, "server 1 "),
                              StartedPid(job, "worker 0 "), StartedPid(job, "worker 1 ")};
  ASSERT_TRUE(job.WaitForOutput("version 1 (", 120s).has_value()) << job.output();
  job.Kill(SIGTERM);
  auto code = job.WaitForExit(120s);
  ASSERT_TRUE(code.has_value()) << job.output();
  EXPECT_EQ(*code, 128 + SIGTERM) << job.output();
  EXPECT_NE(job.output().find("passing it on to every child"), std::string::npos);
  // The supervisor reaped them before it ended.
  for (pid_t pid : nodes) EXPECT_TRUE(WaitGone(pid, 0ms)) << pid;
}

// The supervisor killed with SIGKILL cannot stop its nodes: the kernel does
// (the parent-death signal each node asked for at startup).
TEST_F(SuperviseJobTest, NodesDieWithTheirSupervisor) {
  std::vector<std::string> argv = {kBin + "/eddy_train", "--local", "--supervise",
                                   "--num_workers=2"};
  for (const auto& f : Flags("gen:rows=100000000", (dir_ / "models").string())) argv.push_back(f);
  Subprocess job(argv);
  std::vector<pid_t> nodes = {StartedPid(job, "server 0 "), StartedPid(job, "server 1 "),
                              StartedPid(job, "worker 0 "), StartedPid(job, "worker 1 ")};
  ASSERT_TRUE(job.WaitForOutput("version 1 (", 120s).has_value()) << job.output();
  job.Kill(SIGKILL);
  ASSERT_TRUE(job.WaitForExit(60s).has_value());
  for (pid_t pid : nodes) EXPECT_TRUE(WaitGone(pid, 30s)) << pid;
}

}  // namespace
}  // namespace eddy
