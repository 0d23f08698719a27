#include "job/supervisor.h"

#include <poll.h>
#include <spawn.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

extern char** environ;

namespace eddy::job {

using Clock = std::chrono::steady_clock;

namespace {

// Signal handlers cannot be handed an object: the one Supervisor that forwards
// signals publishes its wake-up eventfd here, and the handler only stores the
// signal and writes to that fd (both async-signal-safe).
std::atomic<int> g_signal_wake_fd{-1};
std::atomic<int> g_pending_signal{0};

void OnTerminatingSignal(int signal) {
  g_pending_signal.store(signal);
  const int fd = g_signal_wake_fd.load();
  if (fd >= 0) {
    const uint64_t one = 1;
    ssize_t ignored = write(fd, &one, sizeof(one));
    (void)ignored;
  }
}

std::string SignalName(int signal) {
  const char* d = strsignal(signal);
  return "signal " + std::to_string(signal) + (d != nullptr ? std::string(" (") + d + ")" : "");
}

}  // namespace

struct Supervisor::Child {
  ChildSpec spec;
  pid_t pid = -1;
  int pidfd = -1;
  bool running = false;
  bool ended = false;  // for good: exited, or died by a signal and not restarted
  bool start_served = false;
  Status start_status;
  int exit_code = 0;
  int restarts = 0;
  int last_signal = 0;
  pid_t last_pid = -1;
  std::optional<Clock::time_point> restart_at;
};

Supervisor::Supervisor(SupervisorOptions options)
    : options_(std::move(options)), wake_fd_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  PCHECK(wake_fd_ >= 0) << "supervisor: eventfd";
  if (options_.forward_signals) {
    g_pending_signal.store(0);
    g_signal_wake_fd.store(wake_fd_);
    struct sigaction action {};
    action.sa_handler = OnTerminatingSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    sigaction(SIGTERM, &action, &old_term_);
    sigaction(SIGINT, &action, &old_int_);
  }
  monitor_ = std::thread([this] { Monitor(); });
}

Supervisor::~Supervisor() {
  {
    MutexLock lock(&mu_);
    quit_ = true;
    restarting_ = false;
    for (auto& c : children_) {
      if (c->running) {
        LOG(WARNING) << "supervisor: killing " << c->spec.name << " (pid " << c->pid << ")";
        kill(c->pid, SIGKILL);
      }
    }
  }
  Wake();
  monitor_.join();
  if (options_.forward_signals) {
    sigaction(SIGTERM, &old_term_, nullptr);
    sigaction(SIGINT, &old_int_, nullptr);
    g_signal_wake_fd.store(-1);
  }
  close(wake_fd_);
}

void Supervisor::Wake() {
  const uint64_t one = 1;
  ssize_t ignored = write(wake_fd_, &one, sizeof(one));
  (void)ignored;
}

StatusOr<pid_t> Supervisor::Start(ChildSpec spec) {
  MutexLock lock(&mu_);
  if (quit_) return FailedPreconditionError("supervisor: shutting down");
  children_.push_back(std::make_unique<Child>());
  Child* child = children_.back().get();
  child->spec = std::move(spec);
  to_start_.push_back(child);
  Wake();
  while (!child->start_served) changed_.Wait(&mu_);
  if (!child->start_status.ok()) return child->start_status;
  return child->pid;
}

void Supervisor::StopRestarting() {
  MutexLock lock(&mu_);
  restarting_ = false;
  Wake();
}

void Supervisor::Signal(int signal) {
  MutexLock lock(&mu_);
  SignalLocked(signal);
  Wake();
}

void Supervisor::SignalLocked(int signal) {
  restarting_ = false;
  for (auto& c : children_) {
    if (c->running) kill(c->pid, signal);
  }
  if (signal != SIGKILL && !kill_at_) kill_at_ = Clock::now() + options_.kill_grace;
}

bool Supervisor::AllEndedLocked() const {
  if (!to_start_.empty()) return false;
  for (const auto& c : children_) {
    if (!c->ended) return false;
  }
  return true;
}

std::optional<std::vector<ChildResult>> Supervisor::Wait(std::chrono::milliseconds timeout) {
  const Clock::time_point deadline = Clock::now() + timeout;
  MutexLock lock(&mu_);
  while (!AllEndedLocked()) {
    if (!changed_.WaitUntil(&mu_, deadline) && !AllEndedLocked()) return std::nullopt;
  }
  std::vector<ChildResult> results;
  for (const auto& c : children_) results.push_back({c->spec.name, c->exit_code, c->restarts});
  return results;
}

std::vector<ChildResult> Supervisor::Wait() {
  while (true) {
    auto results = Wait(std::chrono::hours(1));
    if (results) return *results;
  }
}

Status Supervisor::Spawn(Child& child) {
  std::vector<char*> argv;
  std::string program = options_.program;
  argv.push_back(program.data());
  for (std::string& a : child.spec.args) argv.push_back(a.data());
  argv.push_back(nullptr);

  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  sigaddset(&defaults, SIGTERM);
  sigaddset(&defaults, SIGINT);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // Nothing but stdin/stdout/stderr: not this process's sockets (MPI's, ZeroMQ's).
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  // posix_spawn execs at once in the child (glibc clones with CLONE_VFORK): safe
  // after MPI_Init, and in a process with threads.
  pid_t pid = -1;
  const int err = posix_spawn(&pid, program.c_str(), &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    return InternalError("supervisor: cannot start " + child.spec.name + " (" + program +
                         "): " + std::strerror(err));
  }
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    const int e = errno;
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    return InternalError("supervisor: pidfd_open: " + std::string(std::strerror(e)));
  }
  child.pid = pid;
  child.pidfd = pidfd;
  child.running = true;
  return OkStatus();
}

void Supervisor::Reap(Child& child) {
  siginfo_t info{};
  if (waitid(P_PID, child.pid, &info, WEXITED | WNOHANG) != 0) {
    if (errno == EINTR) return;
    // Reaped by someone else (ECHILD): its status is lost; count it as failed.
    PLOG(ERROR) << "supervisor: waitid for " << child.spec.name << " (pid " << child.pid << ")";
    info.si_code = CLD_EXITED;
    info.si_status = 1;
  } else if (info.si_pid == 0) {
    return;  // not ended yet
  }
  close(child.pidfd);
  child.pidfd = -1;
  child.running = false;
  child.last_pid = child.pid;
  changed_.NotifyAll();
  const std::string who = child.spec.name + " (pid " + std::to_string(child.pid) + ")";
  if (info.si_code == CLD_EXITED) {
    child.ended = true;
    child.exit_code = info.si_status;
    if (info.si_status == 0) {
      LOG(INFO) << "supervisor: " << who << " exited";
    } else {
      LOG(WARNING) << "supervisor: " << who << " exited with code " << info.si_status
                   << "; not restarted";
    }
    return;
  }
  const int signal = info.si_status;
  child.last_signal = signal;
  if (restarting_ && child.restarts < options_.max_restarts) {
    ++child.restarts;
    auto delay = options_.backoff;
    for (int i = 1; i < child.restarts && delay < options_.max_backoff; ++i) delay *= 2;
    delay = std::min(delay, options_.max_backoff);
    child.restart_at = Clock::now() + delay;
    LOG(WARNING) << "supervisor: " << who << " was killed by " << SignalName(signal)
                 << "; restarting it in " << delay.count() << " ms (restart " << child.restarts
                 << " of " << options_.max_restarts << ")";
    return;
  }
  child.ended = true;
  child.exit_code = 128 + signal;
  LOG(ERROR) << "supervisor: " << who << " was killed by " << SignalName(signal)
             << "; not restarted ("
             << (restarting_ ? "it was restarted " + std::to_string(child.restarts) +
                                   " time(s), the limit (--max_restarts)"
                             : std::string("the job is ending"))
             << ")";
}

void Supervisor::Monitor() {
  MutexLock lock(&mu_);
  while (true) {
    while (!to_start_.empty()) {
      Child* c = to_start_.front();
      to_start_.pop_front();
      c->start_status = Spawn(*c);
      if (c->start_status.ok()) {
        LOG(INFO) << "supervisor: started " << c->spec.name << " (pid " << c->pid << ")";
      } else {
        c->ended = true;
        c->exit_code = 127;
      }
      c->start_served = true;
      changed_.NotifyAll();
    }
    if (const int signal = options_.forward_signals ? g_pending_signal.exchange(0) : 0;
        signal != 0 && forwarded_signal_ == 0) {
      LOG(WARNING) << "supervisor: got " << SignalName(signal) << "; passing it on to every child";
      forwarded_signal_ = signal;
      SignalLocked(signal);
    }
    const Clock::time_point now = Clock::now();
    if (kill_at_ && now >= *kill_at_) {
      kill_at_.reset();
      for (auto& c : children_) {
        if (!c->running) continue;
        LOG(WARNING) << "supervisor: " << c->spec.name << " (pid " << c->pid
                     << ") still runs; killing it";
        kill(c->pid, SIGKILL);
      }
    }
    std::optional<Clock::time_point> next = kill_at_;
    for (auto& c : children_) {
      if (!c->restart_at) continue;
      if (!restarting_) {  // the job is ending: it stays dead
        c->restart_at.reset();
        c->ended = true;
        c->exit_code = 128 + c->last_signal;
        changed_.NotifyAll();
      } else if (now >= *c->restart_at) {
        c->restart_at.reset();
        Status s = Spawn(*c);
        if (s.ok()) {
          LOG(WARNING) << "supervisor: restarted " << c->spec.name << " (pid " << c->pid
                       << ") after it was killed by signal " << c->last_signal << " (pid "
                       << c->last_pid << ")";
        } else {
          LOG(ERROR) << s;
          c->ended = true;
          c->exit_code = 128 + c->last_signal;
          changed_.NotifyAll();
        }
      } else if (!next || *c->restart_at < *next) {
        next = c->restart_at;
      }
    }
    bool running = false;
    for (auto& c : children_) running |= c->running;
    if (forwarded_signal_ != 0 && AllEndedLocked()) {
      // Every child ended: end like the signal would have ended this process.
      LOG(WARNING) << "supervisor: every child ended; ending with " << SignalName(forwarded_signal_);
      google::FlushLogFiles(google::GLOG_INFO);
      signal(forwarded_signal_, SIG_DFL);
      kill(getpid(), forwarded_signal_);
      forwarded_signal_ = 0;
    }
    if (quit_ && !running) break;

    std::vector<pollfd> fds{{wake_fd_, POLLIN, 0}};
    std::vector<Child*> polled;
    for (auto& c : children_) {
      if (!c->running) continue;
      fds.push_back({c->pidfd, POLLIN, 0});
      polled.push_back(c.get());
    }
    int timeout_ms = -1;
    if (next) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*next - now);
      timeout_ms = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    mu_.Unlock();
    const int n = poll(fds.data(), fds.size(), timeout_ms);
    mu_.Lock();
    if (n <= 0) continue;
    if (fds[0].revents != 0) {
      uint64_t count = 0;
      ssize_t ignored = read(wake_fd_, &count, sizeof(count));
      (void)ignored;
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents != 0) Reap(*polled[i - 1]);
    }
  }
  for (auto& c : children_) {
    if (!c->ended) {
      c->ended = true;
      c->exit_code = c->last_signal != 0 ? 128 + c->last_signal : 128 + SIGKILL;
    }
  }
  changed_.NotifyAll();
}

Status BindToSupervisor(pid_t supervisor) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    return InternalError("prctl(PR_SET_PDEATHSIG): " + std::string(std::strerror(errno)));
  }
  // The supervisor may have died before prctl: then this process was already
  // reparented and would never get the signal.
  if (getppid() != supervisor) {
    return FailedPreconditionError("the supervisor (pid " + std::to_string(supervisor) +
                                   ") is gone");
  }
  return OkStatus();
}

}  // namespace eddy::job
