// One model's scheduler: a bounded queue and the replicas that batch from
// it (see request_queue.h for admission, replica.h for the decoding loop).
//
// Thread-safe. Plain C++: the model is only forward-declared here.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "quantmt/engine/engine.h"
#include "quantmt/engine/mutex.h"
#include "serving/cpu_threads.h"
#include "serving/replica.h"
#include "serving/request_queue.h"

namespace quantmt {

struct LoadedModel;

class Scheduler {
 public:
  // Starts plan.replicas replicas (threads_per_replica applies on CPU).
  // REQUIRES: options validated (ValidateSchedulerOptions).
  Scheduler(std::string model_name, std::shared_ptr<const LoadedModel> model,
            const SchedulerOptions& options, const ThreadPlan& plan, EngineObserver* observer);
  // Stops with no grace limit: accepted requests finish first.
  ~Scheduler();

  // Queues the request's sentences. On OK the scheduler completes the
  // request exactly once. Otherwise nothing was queued and the caller
  // completes it: ResourceExhausted (queue full), Unavailable (stopping).
  absl::Status Submit(const std::shared_ptr<RequestState>& request);

  // Refuses new requests (Unavailable) from now on.
  void StopAccepting();
  // Refuses new requests; lets accepted ones finish until `grace` has
  // passed, then cancels the rest; returns when the replicas have exited.
  // Idempotent.
  void Stop(absl::Duration grace) ABSL_LOCKS_EXCLUDED(stop_mu_);
  bool stopping() const { return stopping_.load(); }

  int queued_sentences() const { return queue_.queued_sentences(); }
  int running_sentences() const;
  int64_t cache_bytes() const;

 private:
  const std::string model_name_;
  const std::shared_ptr<const LoadedModel> model_;
  RequestQueue queue_;
  std::vector<std::unique_ptr<Replica>> replicas_;
  std::atomic<bool> stopping_{false};
  Mutex stop_mu_;  // one Stop at a time
};

// InvalidArgument naming the first option out of range.
absl::Status ValidateSchedulerOptions(const SchedulerOptions& options);

// The cache budget and per-position size of `model` under `options`.
BatchBudget BudgetFor(const LoadedModel& model, const SchedulerOptions& options);

}  // namespace quantmt
