// A server-streaming call whose work runs on its own thread (Benchmark,
// Evaluate): the thread sends progress with Send(), which waits for each
// write, and its return value finishes the call.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <thread>

#include "quantmt/engine/engine.h"
#include "quantmt/engine/mutex.h"

namespace quantmt::server {

template <typename Response>
class StreamingJob : public grpc::ServerWriteReactor<Response> {
 public:
  using Body = std::function<grpc::Status(StreamingJob&)>;

  // Runs `body` on a new thread; `on_finish` runs with its status just
  // before the call is finished (for metrics). The call cannot end before
  // the body returns, so the body may use the call's context and request.
  static StreamingJob* Start(Body body, std::function<void(const grpc::Status&)> on_finish) {
    auto* job = new StreamingJob();
    std::thread([job, body = std::move(body), on_finish = std::move(on_finish)] {
      const grpc::Status status = body(*job);
      on_finish(status);
      job->Finish(status);  // `job` may be deleted from here on
    }).detach();
    return job;
  }

  // Sends one message and waits until it is written. False when the client
  // has gone: the body should stop and return.
  bool Send(const Response& response) ABSL_LOCKS_EXCLUDED(mutex_) {
    MutexLock lock(&mutex_);
    if (broken_) return false;
    writing_ = true;
    this->StartWrite(&response);
    while (writing_) write_done_.Wait(&mutex_);
    return !broken_;
  }

  // Cancelled when the client cancels; pass it to engine requests.
  const std::shared_ptr<CancellationToken>& cancellation() const { return cancellation_; }

  void OnWriteDone(bool ok) override {
    MutexLock lock(&mutex_);
    if (!ok) broken_ = true;
    writing_ = false;
    write_done_.Signal();
  }
  void OnCancel() override {
    cancellation_->Cancel();
    MutexLock lock(&mutex_);
    broken_ = true;
  }
  void OnDone() override { delete this; }

 private:
  StreamingJob() = default;

  const std::shared_ptr<CancellationToken> cancellation_ = std::make_shared<CancellationToken>();
  Mutex mutex_;
  CondVar write_done_;  // signalled when writing_ turns false
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool broken_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace quantmt::server
