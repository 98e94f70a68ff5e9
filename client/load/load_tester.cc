#include "client/load/load_tester.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <random>

#include "absl/status/status.h"
#include "quantmt/engine/mutex.h"
#include "quantmt/v1/translation.grpc.pb.h"

namespace quantmt::client {

double LevelAt(const LoadOptions& options, absl::Duration elapsed) {
  switch (options.schedule) {
    case Schedule::kConstant:
      return options.start_level;
    case Schedule::kStep: {
      const double steps = std::floor(elapsed / options.step_duration);
      const double level = options.start_level + steps * options.step;
      return options.end_level >= options.start_level ? std::min(level, options.end_level)
                                                      : std::max(level, options.end_level);
    }
    case Schedule::kRamp: {
      const double fraction = std::clamp(absl::FDivDuration(elapsed, options.duration), 0.0, 1.0);
      return options.start_level + (options.end_level - options.start_level) * fraction;
    }
  }
  return options.start_level;
}

namespace {

class LoadRun {
 public:
  LoadRun(std::shared_ptr<grpc::Channel> channel, const LoadOptions& options)
      : stub_(v1::TranslationService::NewStub(channel)), options_(options) {}

  LoadResult Run(const std::function<void(const LoadProgress&)>& progress,
                 absl::Duration progress_interval) {
    const absl::Time start = absl::Now();
    measure_start_ = start + options_.warmup;
    const absl::Time end =
        options_.total_requests > 0 ? absl::InfiniteFuture() : measure_start_ + options_.duration;
    absl::Time next_arrival = start, next_progress = start + progress_interval;
    std::mt19937_64 random(12345);
    for (;;) {
      const absl::Time now = absl::Now();
      if (now >= end || CountedEnough()) break;
      const double level = LevelAt(options_, std::max(absl::ZeroDuration(), now - measure_start_));
      if (options_.mode == LoadMode::kConcurrency) {
        std::vector<std::shared_ptr<Call>> calls;
        {
          MutexLock lock(&mutex_);
          while (inflight_ < std::lround(level) && !CountedEnoughLocked()) {
            calls.push_back(PrepareLocked(absl::Now()));
          }
        }
        for (auto& call : calls) StartCall(std::move(call));
        // Wake when an answer frees a slot, or for progress, cancels and the end.
        MutexLock lock(&mutex_);
        target_inflight_ = static_cast<int>(std::lround(level));
        const absl::Time wake = std::min({now + absl::Milliseconds(20), next_progress, end});
        while (inflight_ >= target_inflight_ && !answered_cv_.WaitWithDeadline(&mutex_, wake)) {
        }
      } else {
        while (absl::Now() >= next_arrival && next_arrival < end && !CountedEnough()) {
          std::shared_ptr<Call> call;
          {
            MutexLock lock(&mutex_);
            if (inflight_ < options_.max_inflight) {
              call = PrepareLocked(next_arrival);
            } else if (next_arrival >= measure_start_) {
              ++result_.skipped;
            }
          }
          if (call) StartCall(std::move(call));
          const double rate = std::max(level, 1e-3);
          const double gap = options_.arrivals == Arrivals::kPoisson
                                 ? std::exponential_distribution<double>(rate)(random)
                                 : 1.0 / rate;
          next_arrival += absl::Seconds(gap);
        }
        absl::SleepFor(std::clamp(std::min(next_arrival, next_progress) - absl::Now(),
                                  absl::ZeroDuration(), absl::Milliseconds(20)));
      }
      CancelDueCalls();
      if (progress && absl::Now() >= next_progress) {
        progress(Snapshot(level));
        next_progress += progress_interval;
      }
    }
    // Every call has a deadline, so every call ends; wait for the last one,
    // still cancelling those whose time comes.
    for (;;) {
      CancelDueCalls();
      MutexLock lock(&mutex_);
      const absl::Time wake = absl::Now() + absl::Milliseconds(20);
      while (inflight_ > 0 && !answered_cv_.WaitWithDeadline(&mutex_, wake)) {
      }
      if (inflight_ == 0) break;
    }
    MutexLock lock(&mutex_);
    result_.seconds = std::max(0.0, absl::ToDoubleSeconds(last_answer_ - measure_start_));
    std::sort(result_.latencies_ok.begin(), result_.latencies_ok.end());
    return result_;
  }

 private:
  // Shared by the gRPC callback and, for a call to be cancelled, the cancel
  // queue: whichever lets go last frees it.
  struct Call {
    grpc::ClientContext context;
    v1::TranslateRequest request;
    v1::TranslateResponse response;
    absl::Time start;
    bool counted = false;
    // Its entry in cancels_, while it waits to be cancelled.
    std::optional<std::multimap<absl::Time, std::shared_ptr<Call>>::iterator> cancel_entry;
  };

  bool CountedEnough() {
    MutexLock lock(&mutex_);
    return CountedEnoughLocked();
  }
  bool CountedEnoughLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return options_.total_requests > 0 && counted_sent_ >= options_.total_requests;
  }

  bool Chance(double fraction) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    return fraction > 0 && std::uniform_real_distribution<double>(0, 1)(draws_) < fraction;
  }
  absl::Duration Between(absl::Duration low, absl::Duration high)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    const double fraction = std::uniform_real_distribution<double>(0, 1)(draws_);
    return low + (high - low) * fraction;
  }

  // A call ready to start (counted as in flight); start it with StartCall
  // after releasing the lock, as gRPC may answer it on this thread.
  std::shared_ptr<Call> PrepareLocked(absl::Time scheduled) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    auto call = std::make_shared<Call>();
    call->start = absl::Now();
    call->counted = scheduled >= measure_start_;
    absl::Duration timeout = options_.request_timeout;
    if (Chance(options_.deadline_fraction)) {
      timeout = Between(options_.short_deadline_min, options_.short_deadline_max);
      if (call->counted) ++result_.short_deadlines;
    }
    call->context.set_deadline(absl::ToChronoTime(call->start + timeout));
    if (Chance(options_.cancel_fraction)) {
      const absl::Time when = call->start + Between(absl::ZeroDuration(), options_.cancel_within);
      call->cancel_entry = cancels_.emplace(when, call);
    }
    call->request.set_model(options_.model);
    call->request.mutable_options()->set_beam_size(options_.beam_size);
    call->request.mutable_options()->set_max_length(options_.max_length);
    const size_t n = options_.inputs.size();
    for (int i = 0; i < options_.sentences_per_request; ++i) {
      call->request.add_sentences(options_.inputs[(next_input_++) % n]);
    }
    ++inflight_;
    ++sent_;
    if (call->counted) ++counted_sent_;
    return call;
  }

  void StartCall(std::shared_ptr<Call> call) {
    Call* raw = call.get();
    stub_->async()->Translate(
        &raw->context, &raw->request, &raw->response,
        [this, call = std::move(call)](grpc::Status status) { OnAnswer(call.get(), status); });
  }

  // Cancels the calls whose cancel time has come (outside the lock: a
  // cancelled call may be answered on this thread).
  void CancelDueCalls() {
    std::vector<std::shared_ptr<Call>> due;
    {
      MutexLock lock(&mutex_);
      const absl::Time now = absl::Now();
      while (!cancels_.empty() && cancels_.begin()->first <= now) {
        due.push_back(std::move(cancels_.begin()->second));
        due.back()->cancel_entry.reset();
        if (due.back()->counted) ++result_.client_cancels;
        cancels_.erase(cancels_.begin());
      }
    }
    for (const auto& call : due) call->context.TryCancel();
  }

  void OnAnswer(Call* call, const grpc::Status& status) {
    const absl::Time now = absl::Now();
    MutexLock lock(&mutex_);
    // Answered before its cancel time: it will not be cancelled.
    if (call->cancel_entry) {
      cancels_.erase(*call->cancel_entry);
      call->cancel_entry.reset();
    }
    ++answered_;
    status.ok() ? ++ok_ : ++errors_;
    if (call->counted) {
      const std::string code =
          absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
      ++result_.requests;
      ++result_.codes[code];
      if (!status.ok()) {
        std::string key = code + ": " + status.error_message();
        if (result_.error_messages.size() >= 32 && !result_.error_messages.count(key)) {
          key = code + ": (other messages)";
        }
        ++result_.error_messages[key];
      }
      if (status.ok()) {
        result_.latencies_ok.push_back(absl::ToDoubleSeconds(now - call->start));
        for (const auto& translation : call->response.translations()) {
          ++result_.sentences_ok;
          result_.source_tokens += translation.source_tokens();
          result_.generated_tokens += translation.generated_tokens();
        }
      }
      last_answer_ = std::max(last_answer_, now);
    }
    --inflight_;
    // Under the lock: once inflight_ reaches 0, Run may return and destroy
    // this object, the condition variable included.
    answered_cv_.SignalAll();
  }

  LoadProgress Snapshot(double level) {
    MutexLock lock(&mutex_);
    LoadProgress progress;
    progress.elapsed_s = absl::ToDoubleSeconds(absl::Now() - measure_start_);
    progress.level = level;
    progress.sent = sent_;
    progress.answered = answered_;
    progress.ok = ok_;
    progress.errors = errors_;
    progress.inflight = inflight_;
    return progress;
  }

  std::unique_ptr<v1::TranslationService::Stub> stub_;
  const LoadOptions options_;
  absl::Time measure_start_;

  Mutex mutex_;          // quantmt::Mutex: ThreadSanitizer sees it (mutex.h says why)
  CondVar answered_cv_;  // signalled on every answer
  std::mt19937_64 draws_ ABSL_GUARDED_BY(mutex_){54321};
  std::multimap<absl::Time, std::shared_ptr<Call>> cancels_ ABSL_GUARDED_BY(mutex_);
  int target_inflight_ ABSL_GUARDED_BY(mutex_) = 0;
  int inflight_ ABSL_GUARDED_BY(mutex_) = 0;
  size_t next_input_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t sent_ ABSL_GUARDED_BY(mutex_) = 0, counted_sent_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t answered_ ABSL_GUARDED_BY(mutex_) = 0, ok_ ABSL_GUARDED_BY(mutex_) = 0;
  int64_t errors_ ABSL_GUARDED_BY(mutex_) = 0;
  absl::Time last_answer_ ABSL_GUARDED_BY(mutex_) = absl::InfinitePast();
  LoadResult result_ ABSL_GUARDED_BY(mutex_);
};

}  // namespace

LoadResult RunLoad(std::shared_ptr<grpc::Channel> channel, const LoadOptions& options,
                   const std::function<void(const LoadProgress&)>& progress,
                   absl::Duration progress_interval) {
  LoadRun run(std::move(channel), options);
  return run.Run(progress, progress_interval);
}

}  // namespace quantmt::client
