// Supervisor with /bin/sh children: a child killed by a signal is restarted up
// to the limit, an exit code is passed on and never restarted, and no child
// outlives the supervisor or its Signal().
#include "job/supervisor.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

namespace eddy::job {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

class SupervisorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("eddy_supervisor_test_" + std::to_string(getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  static SupervisorOptions Options(int max_restarts) {
    SupervisorOptions o;
    o.program = "/bin/sh";
    o.max_restarts = max_restarts;
    o.backoff = 1ms;
    o.max_backoff = 4ms;
    return o;
  }
  // A child running `script` under sh; $F is a file of this test.
  ChildSpec Shell(const std::string& name, const std::string& script) {
    return {name, {"-c", "F=" + (dir_ / "runs").string() + "; " + script}};
  }
  // Lines in $F: how often the children ran.
  int Runs() {
    std::ifstream in(dir_ / "runs");
    std::string line;
    int n = 0;
    while (std::getline(in, line)) ++n;
    return n;
  }

  fs::path dir_;
};

TEST_F(SupervisorTest, AChildKilledByASignalIsRestartedUpToTheLimit) {
  Supervisor supervisor(Options(3));
  ASSERT_TRUE(supervisor.Start(Shell("server 0", "echo run >> $F; kill -9 $$")).ok());
  auto results = supervisor.Wait(60s);
  ASSERT_TRUE(results.has_value());
  ASSERT_EQ(results->size(), 1u);
  EXPECT_EQ(results->at(0).name, "server 0");
  EXPECT_EQ(results->at(0).exit_code, 128 + SIGKILL);
  EXPECT_EQ(results->at(0).restarts, 3);
  EXPECT_EQ(Runs(), 4);  // the first run and three restarts
}

TEST_F(SupervisorTest, AnExitCodeIsPassedOnAndNotRestarted) {
  Supervisor supervisor(Options(3));
  ASSERT_TRUE(supervisor.Start(Shell("worker 0", "echo run >> $F; exit 3")).ok());
  ASSERT_TRUE(supervisor.Start(Shell("worker 1", "echo run >> $F; exit 0")).ok());
  auto results = supervisor.Wait(60s);
  ASSERT_TRUE(results.has_value());
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ(results->at(0).exit_code, 3);
  EXPECT_EQ(results->at(0).restarts, 0);
  EXPECT_EQ(results->at(1).exit_code, 0);
  EXPECT_EQ(results->at(1).restarts, 0);
  EXPECT_EQ(Runs(), 2);
}

TEST_F(SupervisorTest, ARestartedChildThatExitsNormallyEndsWithItsCode) {
  Supervisor supervisor(Options(3));
  // The first run dies by SIGKILL; the restart finds $F and exits 0.
  ASSERT_TRUE(supervisor
                  .Start(Shell("server 1",
                               "if [ -e $F ]; then exit 0; fi; echo run >> $F; kill -9 $$"))
                  .ok());
  auto results = supervisor.Wait(60s);
  ASSERT_TRUE(results.has_value());
  EXPECT_EQ(results->at(0).exit_code, 0);
  EXPECT_EQ(results->at(0).restarts, 1);
}

TEST_F(SupervisorTest, NoRestartOnceTheJobEnds) {
  Supervisor supervisor(Options(3));
  supervisor.StopRestarting();
  ASSERT_TRUE(supervisor.Start(Shell("server 0", "echo run >> $F; kill -9 $$")).ok());
  auto results = supervisor.Wait(60s);
  ASSERT_TRUE(results.has_value());
  EXPECT_EQ(results->at(0).exit_code, 128 + SIGKILL);
  EXPECT_EQ(results->at(0).restarts, 0);
  EXPECT_EQ(Runs(), 1);
}

TEST_F(SupervisorTest, SignalEndsEveryChildWithoutRestarts) {
  Supervisor supervisor(Options(3));
  ASSERT_TRUE(supervisor.Start(Shell("server 0", "exec sleep 600")).ok());
  ASSERT_TRUE(supervisor.Start(Shell("worker 0", "exec sleep 600")).ok());
  EXPECT_FALSE(supervisor.Wait(10ms).has_value());  // still running
  supervisor.Signal(SIGTERM);
  auto results = supervisor.Wait(60s);
  ASSERT_TRUE(results.has_value());
  for (const ChildResult& r : *results) {
    EXPECT_EQ(r.exit_code, 128 + SIGTERM) << r.name;
    EXPECT_EQ(r.restarts, 0) << r.name;
  }
}

TEST_F(SupervisorTest, AChildIgnoringSigtermIsKilledAfterTheGrace) {
  SupervisorOptions o = Options(3);
  o.kill_grace = 50ms;
  Supervisor supervisor(o);
  // sh ignores SIGTERM; the loop waits for its marker file, so it is ready.
  ASSERT_TRUE(supervisor
                  .Start(Shell("server 0",
                               "trap '' TERM; echo run >> $F; while :; do :; done"))
                  .ok());
  while (Runs() == 0) std::this_thread::yield();  // polls a file the child writes
  supervisor.Signal(SIGTERM);
  auto results = supervisor.Wait(60s);
  ASSERT_TRUE(results.has_value());
  EXPECT_EQ(results->at(0).exit_code, 128 + SIGKILL);
}

TEST_F(SupervisorTest, TheDestructorKillsAndReapsTheChildren) {
  pid_t pid = -1;
  {
    Supervisor supervisor(Options(3));
    StatusOr<pid_t> started = supervisor.Start(Shell("server 0", "exec sleep 600"));
    ASSERT_TRUE(started.ok());
    pid = *started;
    EXPECT_EQ(kill(pid, 0), 0);
  }
  // Killed and reaped: the pid no longer names a process.
  EXPECT_EQ(kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(SupervisorTest, AProgramThatCannotStartIsAnError) {
  SupervisorOptions o = Options(3);
  o.program = (dir_ / "no_such_program").string();
  Supervisor supervisor(o);
  StatusOr<pid_t> started = supervisor.Start({"server 0", {}});
  EXPECT_FALSE(started.ok());
  auto results = supervisor.Wait(60s);
  ASSERT_TRUE(results.has_value());
  EXPECT_EQ(results->at(0).exit_code, 127);
}

TEST(BindToSupervisorTest, FailsWhenTheGivenPidIsNotTheParent) {
  EXPECT_TRUE(BindToSupervisor(getppid()).ok());
  EXPECT_FALSE(BindToSupervisor(getpid()).ok());
  prctl(PR_SET_PDEATHSIG, 0);  // this test process is nobody's supervised node
}

}  // namespace
}  // namespace eddy::job
