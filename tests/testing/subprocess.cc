#include "tests/testing/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace eddy::testing {

Subprocess::Subprocess(std::vector<std::string> argv, std::vector<std::string> env) {
  // Everything the child needs is prepared before fork: only async-signal-safe
  // calls happen between fork and exec.
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  std::vector<char*> envp;
  for (std::string& e : env) envp.push_back(e.data());  // first: getenv takes the first match
  for (char** e = environ; *e != nullptr; ++e) envp.push_back(*e);
  envp.push_back(nullptr);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) std::abort();
  pid_ = fork();
  if (pid_ < 0) std::abort();
  if (pid_ == 0) {
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    execve(args[0], args.data(), envp.data());
    static const char kMsg[] = "exec failed\n";
    ssize_t ignored = write(STDERR_FILENO, kMsg, sizeof(kMsg) - 1);
    (void)ignored;
    _exit(127);
  }
  close(fds[1]);
  out_fd_ = fds[0];
  pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  reader_ = std::thread([this] {
    char buf[4096];
    while (true) {
      ssize_t n = read(out_fd_, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      std::lock_guard lock(mu_);
      if (n <= 0) {
        eof_ = true;
        cv_.notify_all();
        return;
      }
      output_.append(buf, static_cast<size_t>(n));
      cv_.notify_all();
    }
  });
}

Subprocess::~Subprocess() {
  if (!exit_code_) {
    Kill(SIGKILL);
    WaitForExit(std::chrono::seconds(30));
  }
  if (reader_.joinable()) reader_.join();
  close(out_fd_);
  if (pidfd_ >= 0) close(pidfd_);
}

std::optional<std::string> Subprocess::WaitForOutput(const std::string& text,
                                                     std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  size_t at = std::string::npos;
  cv_.wait_for(lock, timeout, [&] {
    at = output_.find(text);
    return at != std::string::npos || eof_;
  });
  if (at == std::string::npos) return std::nullopt;
  size_t begin = output_.rfind('\n', at);
  begin = begin == std::string::npos ? 0 : begin + 1;
  size_t end = output_.find('\n', at);
  return output_.substr(begin, end == std::string::npos ? std::string::npos : end - begin);
}

std::optional<int> Subprocess::WaitForExit(std::chrono::milliseconds timeout) {
  if (exit_code_) return exit_code_;
  struct pollfd p = {pidfd_, POLLIN, 0};
  int ready = pidfd_ >= 0 ? poll(&p, 1, static_cast<int>(timeout.count())) : 1;
  if (ready == 0) return std::nullopt;
  int status = 0;
  if (waitpid(pid_, &status, 0) != pid_) return std::nullopt;
  exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  if (reader_.joinable()) reader_.join();  // the pipe closes with the process (and its children)
  return exit_code_;
}

void Subprocess::Kill(int signal) {
  if (!exit_code_) kill(pid_, signal);
}

std::string Subprocess::output() {
  std::lock_guard lock(mu_);
  return output_;
}

}  // namespace eddy::testing
