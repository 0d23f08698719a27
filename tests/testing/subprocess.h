// Subprocess: runs a program with arguments, captures its stdout+stderr, lets a
// test wait for a line of output or for the exit (with timeouts, no sleeps), and
// kills it. Used by the multi-process tests.
// Thread-safety: one owner thread; output is collected by an internal thread.
#ifndef EDDY_TESTS_TESTING_SUBPROCESS_H_
#define EDDY_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace eddy::testing {

class Subprocess {
 public:
  // Starts `argv[0]` with the given arguments and extra environment entries
  // ("NAME=value"). Aborts the test process if fork/exec setup fails.
  explicit Subprocess(std::vector<std::string> argv, std::vector<std::string> env = {});
  ~Subprocess();  // kills the process if it still runs
  Subprocess(const Subprocess&) = delete;
  Subprocess& operator=(const Subprocess&) = delete;

  // Waits until the output contains `text`; returns the whole line holding it,
  // or nullopt on timeout or exit without it.
  std::optional<std::string> WaitForOutput(const std::string& text,
                                           std::chrono::milliseconds timeout);
  // Waits for the exit; returns the exit code (128+signal if killed), or nullopt on timeout.
  std::optional<int> WaitForExit(std::chrono::milliseconds timeout);
  void Kill(int signal);
  std::string output();
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int out_fd_ = -1;
  std::optional<int> exit_code_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::string output_;  // guarded by mu_
  bool eof_ = false;    // guarded by mu_
  std::thread reader_;
};

}  // namespace eddy::testing

#endif  // EDDY_TESTS_TESTING_SUBPROCESS_H_
