// RoleJob: a job launched one process per role (--role=scheduler|server|worker,
// the same flags for every process) as a process supervisor runs it, with the
// means to kill a node and start its replacement.
// Thread-safety: used by one test thread.
#ifndef EDDY_TESTS_WORKER_ROLE_JOB_H_
#define EDDY_TESTS_WORKER_ROLE_JOB_H_

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/worker/train_job_fixture.h"

namespace eddy {

class RoleJob {
 public:
  // `flags` for every process; `scheduler_flags` for the scheduler only.
  explicit RoleJob(std::vector<std::string> flags, std::vector<std::string> scheduler_flags = {})
      : flags_(std::move(flags)), scheduler_flags_(std::move(scheduler_flags)) {}

  // Starts the scheduler, then a node per entry of `roles` (node i has role
  // roles[i]). False (with a test failure) when the scheduler prints no endpoint.
  bool Start(std::vector<std::string> roles = {"server", "server", "worker", "worker"}) {
    roles_ = std::move(roles);
    scheduler_ = Launch("scheduler", scheduler_flags_);
    std::optional<std::string> line = scheduler_->WaitForOutput("scheduler endpoint: ", 60s);
    EXPECT_TRUE(line.has_value()) << scheduler_->output();
    if (!line) return false;
    endpoint_ = line->substr(line->find("tcp://"));
    for (const std::string& role : roles_) nodes_.push_back(Launch(role, {}));
    return true;
  }

  Subprocess& scheduler() { return *scheduler_; }
  Subprocess& node(size_t i) { return *nodes_[i]; }
  const std::string& role(size_t i) const { return roles_[i]; }
  size_t size() const { return nodes_.size(); }

  // Starts node i again with its role and the same flags (what a supervisor
  // does after it died); the old process is kept until the end.
  void Replace(size_t i) {
    dead_.push_back(std::move(nodes_[i]));
    nodes_[i] = Launch(roles_[i], {});
  }

  // Waits for the scheduler's exit, then for the nodes'; the scheduler's code.
  std::optional<int> Wait(std::chrono::milliseconds timeout) {
    std::optional<int> code = scheduler_->WaitForExit(timeout);
    for (auto& n : nodes_) n->WaitForExit(60s);
    return code;
  }

 private:
  std::unique_ptr<Subprocess> Launch(const std::string& role,
                                     const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {kBin + "/eddy_train", "--role=" + role};
    if (role != "scheduler") argv.push_back("--scheduler=" + endpoint_);
    argv.insert(argv.end(), flags_.begin(), flags_.end());
    argv.insert(argv.end(), extra.begin(), extra.end());
    return std::make_unique<Subprocess>(argv);
  }

  const std::vector<std::string> flags_;
  const std::vector<std::string> scheduler_flags_;
  std::vector<std::string> roles_;
  std::string endpoint_;
  std::unique_ptr<Subprocess> scheduler_;
  std::vector<std::unique_ptr<Subprocess>> nodes_;
  std::vector<std::unique_ptr<Subprocess>> dead_;
};

}  // namespace eddy

#endif  // EDDY_TESTS_WORKER_ROLE_JOB_H_
