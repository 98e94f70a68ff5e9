// One replica: a thread that owns a running batch (a BatchDecoder: CUDA
// graphs on a GPU, StepDecoder otherwise) over a model shared with the other
// replicas, feeds it from the model's queue and delivers results.
// Device-agnostic (tensors live on the model's device).
//
// Each step: admit queued sentences (every step with continuous batching,
// only when the batch is empty with static batching), drop sentences whose
// request was cancelled, failed or passed its deadline, decode one token,
// stream, deliver the finished sentences.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "quantmt/engine/engine.h"
#include "serving/request_queue.h"

namespace quantmt {

struct LoadedModel;

class Replica {
 public:
  // Starts the thread. `intra_op_threads` applies on CPU only; `budget`
  // sizes the decoder's preallocated cache on CUDA.
  Replica(std::string model_name, std::shared_ptr<const LoadedModel> model, RequestQueue* queue,
          bool continuous_batching, int intra_op_threads, const BatchBudget& budget,
          EngineObserver* observer);
  // REQUIRES: Join() was called.
  ~Replica();

  // Makes the thread fail its running sentences (Cancelled) and exit at the
  // next step instead of finishing them.
  void Abort() { abort_.store(true); }
  // Waits for the thread; it exits once the queue is closed and drained and
  // its batch is empty (or after Abort).
  void Join();
  bool exited() const { return exited_.load(); }

  int running_sentences() const { return running_sentences_.load(); }
  int64_t cache_bytes() const { return cache_bytes_.load(); }

 private:
  void Run();

  const std::string model_name_;
  const std::shared_ptr<const LoadedModel> model_;
  RequestQueue* const queue_;
  const bool continuous_batching_;
  const int intra_op_threads_;
  const BatchBudget budget_;
  EngineObserver* const observer_;
  std::atomic<bool> abort_{false};
  std::atomic<bool> exited_{false};
  std::atomic<int> running_sentences_{0};
  std::atomic<int64_t> cache_bytes_{0};
  std::thread thread_;
};

}  // namespace quantmt
