#include "serving/scheduler.h"

#include <thread>

#include "absl/strings/str_cat.h"
#include "decoding/step_decoder.h"
#include "serving/loaded_model.h"

namespace quantmt {

absl::Status ValidateSchedulerOptions(const SchedulerOptions& options) {
  if (options.max_queued_sentences < 1) {
    return absl::InvalidArgumentError("scheduler.max_queued_sentences must be at least 1");
  }
  if (options.max_batch_sentences < 1) {
    return absl::InvalidArgumentError("scheduler.max_batch_sentences must be at least 1");
  }
  if (options.max_batch_tokens < 1) {
    return absl::InvalidArgumentError("scheduler.max_batch_tokens must be at least 1");
  }
  if (options.max_batch_wait < absl::ZeroDuration() || options.max_batch_wait > absl::Seconds(10)) {
    return absl::InvalidArgumentError("scheduler.max_batch_wait must be in [0, 10s]");
  }
  if (options.max_cache_bytes < 0) {
    return absl::InvalidArgumentError("scheduler.max_cache_bytes must not be negative");
  }
  return absl::OkStatus();
}

BatchBudget BudgetFor(const LoadedModel& model, const SchedulerOptions& options) {
  BatchBudget budget;
  budget.max_rows = options.max_batch_sentences;
  budget.max_tokens = options.max_batch_tokens;
  constexpr int64_t kGiB = int64_t{1} << 30;
  budget.max_cache_bytes = options.max_cache_bytes > 0 ? options.max_cache_bytes
                           : model.device.is_cuda()    ? 2 * kGiB
                                                       : kGiB;
  const int64_t element_size = model.info.compute_type == "float32" ? 4 : 2;
  budget.cache_bytes_per_position =
      StepDecoder::CacheBytesBound(model.transformer->config(), element_size, 1, 1, 0);
  return budget;
}

Scheduler::Scheduler(std::string model_name, std::shared_ptr<const LoadedModel> model,
                     const SchedulerOptions& options, const ThreadPlan& plan,
                     EngineObserver* observer)
    : model_name_(std::move(model_name)),
      model_(std::move(model)),
      queue_(options, BudgetFor(*model_, options)) {
  for (int i = 0; i < plan.replicas; ++i) {
    replicas_.push_back(
        std::make_unique<Replica>(model_name_, model_, &queue_, options.continuous_batching,
                                  plan.threads_per_replica, queue_.budget(), observer));
  }
}

Scheduler::~Scheduler() { Stop(absl::InfiniteDuration()); }

absl::Status Scheduler::Submit(const std::shared_ptr<RequestState>& request) {
  const int max_length =
      ToSearchOptions(request->options(), model_->transformer->config()).max_length;
  return queue_.Submit(request, max_length);
}

void Scheduler::StopAccepting() {
  stopping_.store(true);
  queue_.Close();
}

void Scheduler::Stop(absl::Duration grace) {
  MutexLock lock(&stop_mu_);
  StopAccepting();
  const absl::Time deadline = absl::Now() + grace;
  auto all_exited = [&] {
    for (const auto& replica : replicas_) {
      if (!replica->exited()) return false;
    }
    return true;
  };
  // Polled: Stop is rare, and the replicas need no extra signalling.
  while (!all_exited() && absl::Now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  if (!all_exited()) {
    const absl::Status cancelled =
        absl::CancelledError("the model stopped before the request finished");
    for (SentenceTask& task : queue_.RemoveAll()) task.request->Fail(cancelled);
    for (auto& replica : replicas_) replica->Abort();
  }
  for (auto& replica : replicas_) replica->Join();
}

int Scheduler::running_sentences() const {
  int running = 0;
  for (const auto& replica : replicas_) running += replica->running_sentences();
  return running;
}

int64_t Scheduler::cache_bytes() const {
  int64_t bytes = 0;
  for (const auto& replica : replicas_) bytes += replica->cache_bytes();
  return bytes;
}

}  // namespace quantmt
