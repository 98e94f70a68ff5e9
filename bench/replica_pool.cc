#include "replica_pool.h"

#include "serving/cpu_threads.h"

namespace quantmt::bench {

ReplicaPool::ReplicaPool(int replicas, int threads_per_replica) {
  for (int i = 0; i < std::max(1, replicas); ++i) {
    threads_.emplace_back([this, i, threads_per_replica] { Loop(i, threads_per_replica); });
  }
}

ReplicaPool::~ReplicaPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (auto& thread : threads_) thread.join();
}

void ReplicaPool::Run(const std::function<void(int)>& job) {
  std::unique_lock<std::mutex> lock(mu_);
  job_ = &job;
  running_ = static_cast<int>(threads_.size());
  ++generation_;
  work_ready_.notify_all();
  work_done_.wait(lock, [&] { return running_ == 0; });
  job_ = nullptr;
}

void ReplicaPool::Loop(int index, int threads_per_replica) {
  SetIntraOpThreadsOfThisThread(threads_per_replica);
  int64_t seen = 0;
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    work_ready_.wait(lock, [&] { return stopping_ || generation_ != seen; });
    if (stopping_) return;
    seen = generation_;
    const std::function<void(int)>* job = job_;
    lock.unlock();
    (*job)(index);
    lock.lock();
    if (--running_ == 0) work_done_.notify_all();
  }
}

}  // namespace quantmt::bench
