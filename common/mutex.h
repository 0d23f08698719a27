// Mutex and MutexLock: std::mutex with clang thread-safety annotations, so that
// fields marked GUARDED_BY(mu_) are checked by -Wthread-safety (scripts/test.sh
// builds the libraries with clang for that). The macros are no-ops elsewhere.
// Thread-safety: as std::mutex.
#ifndef EDDY_COMMON_MUTEX_H_
#define EDDY_COMMON_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>

#if defined(__clang__)
#define EDDY_THREAD_ANNOTATION(x) __attribute__((x))
#else
#define EDDY_THREAD_ANNOTATION(x)
#endif

#define CAPABILITY(x) EDDY_THREAD_ANNOTATION(capability(x))
#define SCOPED_CAPABILITY EDDY_THREAD_ANNOTATION(scoped_lockable)
#define GUARDED_BY(x) EDDY_THREAD_ANNOTATION(guarded_by(x))
#define PT_GUARDED_BY(x) EDDY_THREAD_ANNOTATION(pt_guarded_by(x))
#define REQUIRES(...) EDDY_THREAD_ANNOTATION(requires_capability(__VA_ARGS__))
#define ACQUIRE(...) EDDY_THREAD_ANNOTATION(acquire_capability(__VA_ARGS__))
#define RELEASE(...) EDDY_THREAD_ANNOTATION(release_capability(__VA_ARGS__))
#define EXCLUDES(...) EDDY_THREAD_ANNOTATION(locks_excluded(__VA_ARGS__))
#define NO_THREAD_SAFETY_ANALYSIS EDDY_THREAD_ANNOTATION(no_thread_safety_analysis)

namespace eddy {

class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;
  void Lock() ACQUIRE() { mu_.lock(); }
  void Unlock() RELEASE() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds `mu` for its scope.
class SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ACQUIRE(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() RELEASE() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// A condition variable used with a held Mutex. Callers loop on their condition:
//   while (!ready_) cv_.Wait(&mu_);
class CondVar {
 public:
  // Releases `mu` while waiting; it is held again on return. May wake spuriously.
  void Wait(Mutex* mu) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();
  }
  // As Wait, until `deadline`; returns false once the deadline has passed.
  template <typename Clock, typename Duration>
  bool WaitUntil(Mutex* mu, std::chrono::time_point<Clock, Duration> deadline) REQUIRES(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    bool in_time = cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
    lock.release();
    return in_time;
  }
  void NotifyOne() { cv_.notify_one(); }
  void NotifyAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace eddy

#endif  // EDDY_COMMON_MUTEX_H_
