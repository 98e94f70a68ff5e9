// One Translate call inside the engine: the results of its sentences as
// they finish (on any replica), its token stream, and its single completion.
//
// Thread-safe. The request completes exactly once: when its last sentence
// finishes, or at the first failure (cancelled, deadline, kernel error),
// whichever comes first; later results and failures are ignored. Completion
// calls the observer, then `done`, outside the lock.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "quantmt/engine/engine.h"
#include "quantmt/engine/mutex.h"

namespace quantmt {

class RequestState {
 public:
  // `sources`: one per sentence, token ids ending with end-of-sentence;
  // empty ones are translated to an empty hypothesis at once.
  RequestState(std::string model, TranslationRequest request, std::vector<std::vector<int>> sources,
               TranslationDone done, EngineObserver* observer);

  const std::vector<std::vector<int>>& sources() const { return sources_; }
  const TranslationOptions& options() const { return request_.options; }
  absl::Time submitted() const { return submitted_; }
  bool streaming() const { return static_cast<bool>(request_.on_token); }
  // Sentences not yet finished (empty ones never count).
  int pending_sentences() const;

  // OK while the request should keep running; otherwise why it must stop
  // (Cancelled, DeadlineExceeded, or the status it already failed with).
  absl::Status CheckAlive(absl::Time now) const;
  bool completed() const { return completed_.load(std::memory_order_acquire); }

  // A sentence started decoding (the first call ends the queue time).
  void MarkStarted(absl::Time now);
  void SentenceDone(int index, TranslationResult result, int generated_tokens, absl::Time now);
  // Completes the request with `status` unless it has completed already.
  void Fail(const absl::Status& status);
  // Completes the request if every sentence is done (e.g. all were empty).
  void CompleteIfDone();
  // Gives the request and its callback back; only for a request that was
  // never queued (a refused submission that the caller retries).
  void Release(TranslationRequest* request, TranslationDone* done);
  // Calls on_token; never concurrently for one request, never after completion.
  void Stream(const TokenEvent& event);

 private:
  // Completes the request; releases mu_ before calling anyone back.
  void Complete(absl::Status status) ABSL_UNLOCK_FUNCTION(mu_);

  const std::string model_;
  TranslationRequest request_;
  const std::vector<std::vector<int>> sources_;
  TranslationDone done_ ABSL_GUARDED_BY(mu_);
  EngineObserver* const observer_;
  const absl::Time submitted_;

  mutable Mutex mu_;
  std::atomic<bool> completed_{false};
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  std::vector<TranslationResult> results_ ABSL_GUARDED_BY(mu_);
  int pending_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time first_started_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  RequestTimings timings_ ABSL_GUARDED_BY(mu_);
  Mutex stream_mu_;  // serializes on_token
};

}  // namespace quantmt
