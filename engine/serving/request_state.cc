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
  MutexLock lock(&mu_);
  return pending_;
}

absl::Status RequestState::CheckAlive(absl::Time now) const {
  if (completed()) {
    MutexLock lock(&mu_);
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
  MutexLock lock(&mu_);
  if (now < first_started_) first_started_ = now;
}

void RequestState::SentenceDone(int index, TranslationResult result, int generated_tokens,
                                absl::Time now) {
  mu_.Lock();
  if (completed()) {
    mu_.Unlock();
    return;
  }
  result.source_tokens = results_[index].source_tokens;
  results_[index] = std::move(result);
  timings_.generated_tokens += generated_tokens;
  if (--pending_ > 0) {
    mu_.Unlock();
    return;
  }
  timings_.compute = now - std::min(first_started_, now);
  Complete(absl::OkStatus());
}

void RequestState::Fail(const absl::Status& status) {
  mu_.Lock();
  if (completed()) {
    mu_.Unlock();
    return;
  }
  failure_ = status;
  if (first_started_ != absl::InfiniteFuture()) timings_.compute = absl::Now() - first_started_;
  Complete(status);
}

void RequestState::CompleteIfDone() {
  mu_.Lock();
  if (completed() || pending_ > 0) {
    mu_.Unlock();
    return;
  }
  Complete(absl::OkStatus());
}

void RequestState::Complete(absl::Status status) {
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
  mu_.Unlock();
  {
    // Wait for a token event in flight: none is delivered after completion.
    MutexLock stream_lock(&stream_mu_);
  }
  if (observer_ != nullptr) observer_->OnRequestDone(model_, status, outcome.timings);
  if (done) done(std::move(outcome));
}

void RequestState::Release(TranslationRequest* request, TranslationDone* done) {
  MutexLock lock(&mu_);
  *request = std::move(request_);
  *done = std::move(done_);
  completed_.store(true, std::memory_order_release);
}

void RequestState::Stream(const TokenEvent& event) {
  if (!request_.on_token) return;
  MutexLock lock(&stream_mu_);
  if (completed()) return;
  request_.on_token(event);
}

}  // namespace quantmt
