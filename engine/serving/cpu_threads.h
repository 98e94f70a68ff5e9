// How CPU replicas and intra-op threads are set.
//
// LibTorch's intra-op parallelism here is OpenMP: each thread that runs an
// op opens its own team of workers, sized by that thread's OpenMP setting.
// So every replica (one decoding thread each) sets its own intra-op thread
// count when it starts, and replicas x threads_per_replica is the number of
// cores a model keeps busy. (at::set_num_threads also updates the
// process-wide default that later threads start from; each replica sets its
// own value first thing, so models with different settings do not mix.)
//
// Defaults: decoder steps are many small ops (a 0.6-2 us LibTorch op floor,
// small matrices) that scale poorly over threads, and every parallel region
// wakes sleeping workers (20-25 us each on a 2-vCPU virtual machine, about
// 40 regions a step). So the automatic plan is one replica of one thread
// per hardware thread: measured on 2 and 16 cores, it beat every plan with
// fewer, wider replicas in throughput and matched them in latency at
// moderate load (docs/serving.md, Threads). Idle replicas split a large
// request between them (request_queue.h), so a single request still uses
// every replica.
#pragma once

namespace quantmt {

struct ThreadPlan {
  int replicas = 1;
  int threads_per_replica = 1;
};

// `replicas` and `threads_per_replica` as requested (0: automatic) on a
// machine with `hardware_threads` (values below 1 count as 1).
ThreadPlan PlanCpuThreads(int hardware_threads, int replicas, int threads_per_replica);

// Sets the intra-op threads of ops run by the calling thread.
void SetIntraOpThreadsOfThisThread(int threads);

}  // namespace quantmt
