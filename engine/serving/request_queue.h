// The queue of one model's sentences waiting to decode, and the admission
// policy that forms batches from it: FIFO order, a bound on queued
// sentences, and per-batch budgets of rows, padded source tokens and cache
// bytes.
//
// Thread-safe: Submit from any thread; replicas call Take.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/time/time.h"
#include "quantmt/engine/engine.h"
#include "quantmt/engine/mutex.h"
#include "serving/request_state.h"

namespace quantmt {

// One sentence of a request.
struct SentenceTask {
  std::shared_ptr<RequestState> request;
  int index = 0;              // into the request's sentences
  int64_t source_length = 0;  // tokens, end-of-sentence included
  int64_t rows = 1;           // beam size: rows it takes in a batch
  int64_t max_length = 0;     // tokens it may be fed
  absl::Time enqueued;
};

// What a replica's running batch holds; admission adds to it.
struct BatchShape {
  int64_t rows = 0;
  int64_t padded_source_length = 0;
  int64_t max_target_length = 0;
};

struct BatchBudget {
  int64_t max_rows = 64;
  int64_t max_tokens = 4096;    // rows x padded source length
  int64_t max_cache_bytes = 0;  // rows x (source + target length) x bytes_per_position
  int64_t cache_bytes_per_position = 0;

  bool Fits(const BatchShape& shape) const;
};

struct TakeResult {
  std::vector<SentenceTask> admitted;
  // Tasks of requests cancelled, past their deadline or already failed,
  // removed from the queue without running; the caller fails them.
  std::vector<std::pair<SentenceTask, absl::Status>> dropped;
  bool closed = false;  // closed and empty: no more work will come
};

class RequestQueue {
 public:
  RequestQueue(const SchedulerOptions& options, const BatchBudget& budget);

  // Queues every non-empty sentence of `request`, or none: ResourceExhausted
  // when they do not fit in the queue, Unavailable once closed. On OK the
  // replicas own the tasks.
  absl::Status Submit(const std::shared_ptr<RequestState>& request, int64_t max_length);

  // Tasks that join a batch now shaped `running`, in FIFO order while they
  // fit the budget (an idle batch always takes at least one task). With
  // `block` (the caller's batch is empty) waits for a task first, then up to
  // max_batch_wait after the oldest one arrived for a batch to fill.
  //
  // Idle replicas come first: while one waits here, a replica with a
  // running batch takes nothing, and the waiting ones split what is queued
  // evenly by rows, so that one large request keeps every replica busy
  // instead of one.
  TakeResult Take(const BatchShape& running, bool block);

  // No more submissions; Take hands out what is left, then reports closed.
  void Close();
  // Removes and returns every queued task (hard stop).
  std::vector<SentenceTask> RemoveAll();
  int queued_sentences() const;
  const BatchBudget& budget() const { return budget_; }
  // Replicas blocked in Take with an empty batch.
  int idle_takers() const;

 private:
  bool FillsBatch() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void DropDead(absl::Time now, TakeResult* result) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  int64_t QueuedRows() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const SchedulerOptions options_;
  const BatchBudget budget_;
  mutable Mutex mu_;
  CondVar arrived_;  // signalled on a submission, a split and Close
  std::deque<SentenceTask> queue_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int idle_takers_ ABSL_GUARDED_BY(mu_) = 0;  // replicas blocked in Take with an empty batch
  // Idle takers released to take their share of a split without waiting
  // for max_batch_wait again. (One still waiting for the queue to fill when
  // the split emptied it skips that wait once, later: harmless.)
  int released_takers_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace quantmt
