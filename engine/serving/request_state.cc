#include "serving/request_state.h"

#include <utility>

namespace quantmt {

RequestState::RequestState(std::string model, TranslationRequest request,
                           std::vector<std::vector<int>> sources, TranslationDone done,
                           EngineObserver* observer)
    : model_(std::move(model)),
      request_(std::move(request)),
      sources_(std::move(sources)),
      done_(std::move(done)),
      observer_(observer),
      submitted_(absl::Now()),
      results_(sources_.size()) {
  for (size_t i = 0; i < sources_.size(); ++i) {
    results_[i].source_tokens = static_cast<int>(sources_[i].size());
    timings_.source_tokens += static_cast<int>(sources_[i].size());
    if (sources_[i].empty()) {
      results_[i].hypotheses.resize(1);
    } else {
      ++pending_;
    }
  }
}

int RequestState::pending_sentences() const {
  std::lock_guard<std::mutex> lock(mu_);
  return pending_;
}

absl::Status RequestState::CheckAlive(absl::Time now) const {
  if (completed()) {
    std::lock_guard<std::mutex> lock(mu_);
    return failure_.ok() ? absl::CancelledError("request already completed") : failure_;
  }
  if (request_.cancellation && request_.cancellation->cancelled()) {
    return absl::CancelledError("the request was cancelled");
  }
  if (now >= request_.deadline) {
    return absl::DeadlineExceededError("the request's deadline passed before it finished");
  }
  return absl::OkStatus();
}

void RequestState::MarkStarted(absl::Time now) {
  std::lock_guard<std::mutex> lock(mu_);
  if (now < first_started_) first_started_ = now;
}

void RequestState::SentenceDone(int index, TranslationResult result, int generated_tokens,
                                absl::Time now) {
  std::unique_lock<std::mutex> lock(mu_);
  if (completed()) return;
  result.source_tokens = results_[index].source_tokens;
  results_[index] = std::move(result);
  timings_.generated_tokens += generated_tokens;
  if (--pending_ > 0) return;
  timings_.compute = now - std::min(first_started_, now);
  Complete(absl::OkStatus(), std::move(lock));
}

void RequestState::Fail(const absl::Status& status) {
  std::unique_lock<std::mutex> lock(mu_);
  if (completed()) return;
  failure_ = status;
  if (first_started_ != absl::InfiniteFuture()) timings_.compute = absl::Now() - first_started_;
  Complete(status, std::move(lock));
}

void RequestState::CompleteIfDone() {
  std::unique_lock<std::mutex> lock(mu_);
  if (completed() || pending_ > 0) return;
  Complete(absl::OkStatus(), std::move(lock));
}

void RequestState::Complete(absl::Status status, std::unique_lock<std::mutex> lock) {
  timings_.queued =
      (first_started_ == absl::InfiniteFuture() ? absl::Now() : first_started_) - submitted_;
  RequestOutcome outcome;
  if (status.ok()) {
    outcome.results = std::move(results_);
  } else {
    outcome.results = status;
  }
  outcome.timings = timings_;
  TranslationDone done = std::move(done_);
  completed_.store(true, std::memory_order_release);
  lock.unlock();
  {
    // Wait for a token event in flight: none is delivered after completion.
    std::lock_guard<std::mutex> stream_lock(stream_mu_);
  }
  if (observer_ != nullptr) observer_->OnRequestDone(model_, status, outcome.timings);
  if (done) done(std::move(outcome));
}

void RequestState::Release(TranslationRequest* request, TranslationDone* done) {
  std::lock_guard<std::mutex> lock(mu_);
  *request = std::move(request_);
  *done = std::move(done_);
  completed_.store(true, std::memory_order_release);
}

void RequestState::Stream(const TokenEvent& event) {
  if (!request_.on_token) return;
  std::lock_guard<std::mutex> lock(stream_mu_);
  if (completed()) return;
  request_.on_token(event);
}

}  // namespace quantmt
