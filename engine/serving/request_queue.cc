#include "serving/request_queue.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace quantmt {

bool BatchBudget::Fits(const BatchShape& shape) const {
  if (shape.rows > max_rows) return false;
  if (shape.rows * shape.padded_source_length > max_tokens) return false;
  const int64_t cache = shape.rows * (shape.padded_source_length + shape.max_target_length) *
                        cache_bytes_per_position;
  return max_cache_bytes <= 0 || cache <= max_cache_bytes;
}

RequestQueue::RequestQueue(const SchedulerOptions& options, const BatchBudget& budget)
    : options_(options), budget_(budget) {}

absl::Status RequestQueue::Submit(const std::shared_ptr<RequestState>& request,
                                  int64_t max_length) {
  const absl::Time now = absl::Now();
  std::vector<SentenceTask> tasks;
  const auto& sources = request->sources();
  for (size_t i = 0; i < sources.size(); ++i) {
    if (sources[i].empty()) continue;
    SentenceTask task;
    task.request = request;
    task.index = static_cast<int>(i);
    task.source_length = static_cast<int64_t>(sources[i].size());
    task.rows = request->options().beam_size;
    task.max_length = max_length;
    task.enqueued = now;
    tasks.push_back(std::move(task));
  }
  {
    MutexLock lock(&mu_);
    if (closed_) return absl::UnavailableError("the model is stopping and takes no new requests");
    const int64_t queued = static_cast<int64_t>(queue_.size());
    if (queued + static_cast<int64_t>(tasks.size()) > options_.max_queued_sentences) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "queue full: ", queued, " sentences waiting, room for ", options_.max_queued_sentences,
          "; this request has ", tasks.size(), " (retry later or send fewer sentences)"));
    }
    for (auto& task : tasks) queue_.push_back(std::move(task));
  }
  arrived_.SignalAll();
  return absl::OkStatus();
}

bool RequestQueue::FillsBatch() const {
  BatchShape shape;
  for (const SentenceTask& task : queue_) {
    shape.rows += task.rows;
    shape.padded_source_length = std::max(shape.padded_source_length, task.source_length);
    shape.max_target_length = std::max(shape.max_target_length, task.max_length);
    if (!budget_.Fits(shape)) return true;
  }
  return false;
}

void RequestQueue::DropDead(absl::Time now, TakeResult* result) {
  for (auto it = queue_.begin(); it != queue_.end();) {
    absl::Status alive = it->request->CheckAlive(now);
    if (alive.ok()) {
      ++it;
      continue;
    }
    result->dropped.emplace_back(std::move(*it), std::move(alive));
    it = queue_.erase(it);
  }
}

int64_t RequestQueue::QueuedRows() const {
  int64_t rows = 0;
  for (const SentenceTask& task : queue_) rows += task.rows;
  return rows;
}

TakeResult RequestQueue::Take(const BatchShape& running, bool block) {
  TakeResult result;
  MutexLock lock(&mu_);
  if (!block && idle_takers_ > 0) return result;  // the idle replicas take it
  int64_t max_rows = budget_.max_rows;
  if (block) {
    ++idle_takers_;
    while (queue_.empty() && !closed_) arrived_.Wait(&mu_);
    if (!queue_.empty() && options_.max_batch_wait > absl::ZeroDuration()) {
      // Give a batch the chance to fill, counted from the oldest arrival.
      const absl::Time until = queue_.front().enqueued + options_.max_batch_wait;
      while (!closed_ && released_takers_ == 0 && !FillsBatch()) {
        if (arrived_.WaitWithDeadline(&mu_, until)) break;
      }
    }
    if (released_takers_ > 0) --released_takers_;
    --idle_takers_;
    DropDead(absl::Now(), &result);
    if (idle_takers_ > 0) {
      // This replica's share; the others are released to take the rest.
      const int sharing = idle_takers_ + 1;
      max_rows = std::max<int64_t>(1, (QueuedRows() + sharing - 1) / sharing);
      released_takers_ = idle_takers_;
      arrived_.SignalAll();
    }
  } else {
    DropDead(absl::Now(), &result);
  }
  BatchShape shape = running;
  int64_t admitted_rows = 0;
  while (!queue_.empty() && admitted_rows < max_rows) {
    const SentenceTask& task = queue_.front();
    BatchShape grown = shape;
    grown.rows += task.rows;
    grown.padded_source_length = std::max(grown.padded_source_length, task.source_length);
    grown.max_target_length = std::max(grown.max_target_length, task.max_length);
    // A task too big for any budget still runs, alone: it cannot be split.
    const bool alone = shape.rows == 0;
    if (!alone && !budget_.Fits(grown)) break;
    shape = grown;
    admitted_rows += task.rows;
    result.admitted.push_back(std::move(queue_.front()));
    queue_.pop_front();
    if (alone && !budget_.Fits(grown)) break;
  }
  result.closed = closed_ && queue_.empty() && result.admitted.empty();
  return result;
}

void RequestQueue::Close() {
  {
    MutexLock lock(&mu_);
    closed_ = true;
  }
  arrived_.SignalAll();
}

std::vector<SentenceTask> RequestQueue::RemoveAll() {
  MutexLock lock(&mu_);
  std::vector<SentenceTask> tasks(std::make_move_iterator(queue_.begin()),
                                  std::make_move_iterator(queue_.end()));
  queue_.clear();
  return tasks;
}

int RequestQueue::queued_sentences() const {
  MutexLock lock(&mu_);
  return static_cast<int>(queue_.size());
}

int RequestQueue::idle_takers() const {
  MutexLock lock(&mu_);
  return idle_takers_;
}

}  // namespace quantmt
