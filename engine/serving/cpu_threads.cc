#include "serving/cpu_threads.h"

#include <ATen/Parallel.h>

#include <algorithm>

namespace quantmt {

ThreadPlan PlanCpuThreads(int hardware_threads, int replicas, int threads_per_replica) {
  const int hardware = std::max(1, hardware_threads);
  ThreadPlan plan;
  if (replicas > 0 && threads_per_replica > 0) {
    plan.replicas = replicas;
    plan.threads_per_replica = threads_per_replica;
  } else if (replicas > 0) {
    plan.replicas = replicas;
    plan.threads_per_replica = std::max(1, hardware / replicas);
  } else if (threads_per_replica > 0) {
    plan.threads_per_replica = threads_per_replica;
    plan.replicas = std::max(1, hardware / threads_per_replica);
  } else {
    // A replica per core: see cpu_threads.h.
    plan.threads_per_replica = 1;
    plan.replicas = hardware;
  }
  return plan;
}

void SetIntraOpThreadsOfThisThread(int threads) {
  // The first op in a thread would otherwise reset its count to the
  // process-wide default: initialize first, then set.
  at::internal::lazy_init_num_threads();
  at::set_num_threads(std::max(1, threads));
}

}  // namespace quantmt
