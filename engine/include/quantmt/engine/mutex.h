// A mutex that Clang's thread-safety analysis checks and ThreadSanitizer
// sees, shared by every quantmt layer: std::mutex (pthread) underneath,
// Abseil's lock annotations on top.
//
// absl::Mutex carries the same annotations, but Debian's Abseil is built
// without ThreadSanitizer, which then cannot see its locks and reports races
// on everything they guard (README, Sanitizers). The names follow
// absl::Mutex, absl::MutexLock and absl::CondVar:
//
//   class Counter {
//    public:
//     void Add(int n) {
//       quantmt::MutexLock lock(&mu_);
//       total_ += n;
//     }
//
//    private:
//     quantmt::Mutex mu_;
//     int total_ ABSL_GUARDED_BY(mu_) = 0;
//   };
//
// GCC ignores the annotations; scripts/check-thread-safety.sh compiles the
// files that use them with clang++ -Werror=thread-safety.
#pragma once

#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace quantmt {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  friend class CondVar;
  std::mutex mu_;
};

// Holds a Mutex for its scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

// Waits for a change made under a Mutex. Wake-ups may be spurious, so wait
// in a loop that rechecks the condition (the loop is in the locked function
// itself, where the analysis sees the lock held):
//
//   while (queue_.empty()) arrived_.Wait(&mu_);
class CondVar {
 public:
  // Releases `mu`, waits for Signal/SignalAll and takes `mu` again.
  void Wait(Mutex* mu) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    cv_.wait(lock);
    lock.release();  // still held, by the caller
  }
  // The same, giving up at `deadline`: true when it passed.
  bool WaitWithDeadline(Mutex* mu, absl::Time deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    std::unique_lock<std::mutex> lock(mu->mu_, std::adopt_lock);
    const bool timed_out =
        cv_.wait_until(lock, absl::ToChronoTime(deadline)) == std::cv_status::timeout;
    lock.release();
    return timed_out;
  }
  void Signal() { cv_.notify_one(); }
  void SignalAll() { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

}  // namespace quantmt
