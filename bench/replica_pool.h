// Decoding threads that share one model, each with its own intra-op thread
// count: what the serving engine's CPU replicas do under load, where each
// replica decodes its own batch (engine/serving/replica.h). The decode
// benchmark splits every batch into equal parts, one per replica.
#pragma once

#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace quantmt::bench {

class ReplicaPool {
 public:
  // `replicas` threads (at least 1), each running its ops on
  // `threads_per_replica` intra-op threads.
  ReplicaPool(int replicas, int threads_per_replica);
  ~ReplicaPool();
  ReplicaPool(const ReplicaPool&) = delete;
  ReplicaPool& operator=(const ReplicaPool&) = delete;

  // Runs job(0) ... job(replicas - 1), one on each replica, and returns when
  // all have finished.
  void Run(const std::function<void(int)>& job);

 private:
  void Loop(int index, int threads_per_replica);

  std::mutex mu_;
  std::condition_variable work_ready_, work_done_;
  const std::function<void(int)>* job_ = nullptr;
  int64_t generation_ = 0;  // bumped by each Run
  int running_ = 0;         // replicas still on the current job
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace quantmt::bench
