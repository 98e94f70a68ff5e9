// TranslationService.TranslateStream: many independent requests on one
// bidirectional stream. Responses queue here and go out one write at a time
// (the callback API allows one outstanding write).
#include <algorithm>
#include <deque>
#include <optional>

#include "quantmt/engine/mutex.h"
#include "server/admission/request_validation.h"
#include "server/convert/proto_conversion.h"
#include "server/convert/status_conversion.h"
#include "server/services/translation_service.h"

namespace quantmt::server {
namespace {

// Requests one stream may have in the engine at once; more are answered
// with RESOURCE_EXHAUSTED for that request id.
constexpr int kMaxInflightPerStream = 64;
// Token updates are dropped (the final sentences never are) once this many
// responses wait for a slow reader.
constexpr size_t kMaxQueuedTokenUpdates = 256;

class TranslateStreamReactor : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  TranslateStreamReactor(ServingState* state, grpc::CallbackServerContext* context)
      : state_(state), context_(context) {
    if (grpc::Status accepting = state_->CheckAccepting(); !accepting.ok()) {
      state_->Record("TranslateStream", "", accepting, absl::Now());
      Finish(accepting);
      return;
    }
    StartRead(&incoming_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the client half-closed (or the call ended)
      std::optional<grpc::Status> finish;
      {
        MutexLock lock(&mutex_);
        reads_done_ = true;
        finish = TakeFinishLocked();
      }
      if (finish) Finish(*finish);
      return;
    }
    v1::TranslateStreamRequest message;
    if (auto size = ValidateMessageSize(incoming_.Length(), state_->limits()); !size.ok()) {
      // Not parsed, as in Translate: the error goes out as id 0.
      Refuse(ToGrpcStatus(size));
    } else if (grpc::Status parsed = ParseRequest(incoming_, &message); !parsed.ok()) {
      // The id is in the unparseable message: the error goes out as id 0.
      Refuse(parsed);
    } else {
      Submit(message);
    }
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override {
    std::optional<grpc::Status> finish;
    {
      MutexLock lock(&mutex_);
      writing_ = false;
      if (!ok) {  // the client is gone: nothing more can be sent
        broken_ = true;
        outgoing_.clear();
        CancelAllLocked();
      } else {
        outgoing_.pop_front();
      }
      WriteNextLocked();
      finish = TakeFinishLocked();
    }
    if (finish) Finish(*finish);
  }

  void OnCancel() override {
    std::optional<grpc::Status> finish;
    {
      MutexLock lock(&mutex_);
      broken_ = true;
      CancelAllLocked();
      finish = TakeFinishLocked();
    }
    if (finish) Finish(*finish);
  }

  void OnDone() override { delete this; }

 private:
  // Answers a message that was not read as a request (no id, no model).
  void Refuse(const grpc::Status& status) {
    state_->Record("TranslateStream", "", status, absl::Now());
    MutexLock lock(&mutex_);
    QueueLocked(ErrorResponse(0, status), /*droppable=*/false);
  }

  void Submit(const v1::TranslateStreamRequest& message) {
    const uint64_t id = message.id();
    const absl::Time start = absl::Now();
    grpc::Status refused = state_->CheckAccepting();
    auto validated =
        ValidateTranslateRequest(message.request(), state_->limits(), state_->default_model());
    if (refused.ok() && !validated.ok()) refused = ToGrpcStatus(validated.status());
    auto token = std::make_shared<CancellationToken>();
    {
      MutexLock lock(&mutex_);
      // A cancelled stream takes no new work: it may finish at any moment.
      if (broken_ || finished_) return;
      if (refused.ok() && inflight_ >= kMaxInflightPerStream) {
        refused = grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               "this stream already has 64 requests in flight: wait for answers "
                               "before sending more");
      }
      if (!refused.ok()) {
        state_->Record("TranslateStream", message.request().model(), refused, start);
        QueueLocked(ErrorResponse(id, refused), /*droppable=*/false);
        return;
      }
      ++inflight_;
      tokens_.push_back(token);
    }
    TranslationRequest request;
    request.sentences = std::move(validated->sentences);
    request.options = validated->options;
    request.deadline = EngineDeadline(*context_);
    request.cancellation = token;
    if (message.stream_tokens()) {
      request.on_token = [this, id](const TokenEvent& event) {
        v1::TranslateStreamResponse response;
        response.set_id(id);
        response.mutable_token()->set_sentence_index(event.sentence_index);
        response.mutable_token()->set_text(event.text);
        MutexLock lock(&mutex_);
        QueueLocked(std::move(response), /*droppable=*/true);
      };
    }
    const std::string model = validated->model;
    const bool return_scores = validated->return_scores;
    // The label is fixed now: +1 and -1 must meet in the same series.
    const std::string label = state_->MetricLabel(model);
    state_->metrics().AddInflight(label, +1);
    state_->engine().Translate(
        model, std::move(request),
        [this, id, model, label, return_scores, start, token](RequestOutcome outcome) {
          state_->metrics().AddInflight(label, -1);
          const grpc::Status status = ToGrpcStatus(outcome.results.status());
          state_->Record("TranslateStream", model, status, start);
          std::optional<grpc::Status> finish;
          {
            MutexLock lock(&mutex_);
            AnswerLocked(id, outcome, status, return_scores);
            tokens_.erase(std::find(tokens_.begin(), tokens_.end(), token));
            --inflight_;
            finish = TakeFinishLocked();
          }
          // Last: once finished, gRPC may delete this reactor at any moment.
          if (finish) Finish(*finish);
        });
  }

  // Queues the responses for one request the engine has answered.
  void AnswerLocked(uint64_t id, const RequestOutcome& outcome, const grpc::Status& status,
                    bool return_scores) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (status.ok()) {
      for (size_t i = 0; i < outcome.results->size(); ++i) {
        v1::TranslateStreamResponse response;
        response.set_id(id);
        response.mutable_sentence()->set_sentence_index(static_cast<int>(i));
        ToProto((*outcome.results)[i], return_scores,
                response.mutable_sentence()->mutable_translation());
        QueueLocked(std::move(response), /*droppable=*/false);
      }
      v1::TranslateStreamResponse done;
      done.set_id(id);
      done.set_done(true);
      QueueLocked(std::move(done), /*droppable=*/false);
    } else {
      QueueLocked(ErrorResponse(id, status), /*droppable=*/false);
    }
  }

  static v1::TranslateStreamResponse ErrorResponse(uint64_t id, const grpc::Status& status) {
    v1::TranslateStreamResponse response;
    response.set_id(id);
    response.mutable_error()->set_code(status.error_code());
    response.mutable_error()->set_message(status.error_message());
    return response;
  }

  void QueueLocked(v1::TranslateStreamResponse response, bool droppable)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (broken_ || finished_) return;
    if (droppable && outgoing_.size() >= kMaxQueuedTokenUpdates) return;
    grpc::ByteBuffer bytes;
    bool own_buffer = false;
    if (!grpc::SerializationTraits<v1::TranslateStreamResponse>::Serialize(response, &bytes,
                                                                           &own_buffer)
             .ok()) {
      return;
    }
    outgoing_.push_back(std::move(bytes));
    WriteNextLocked();
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (writing_ || outgoing_.empty() || broken_) return;
    writing_ = true;
    StartWrite(&outgoing_.front());
  }

  void CancelAllLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    for (const auto& token : tokens_) token->Cancel();
  }

  // The status to finish with, once reading is over (half-close or cancel),
  // every request has been answered by the engine and every answer is
  // written (or the client is gone); until then the engine may still call
  // back into this reactor. Returned once. The caller calls Finish after
  // unlocking: gRPC may delete this reactor (OnDone), mutex_ included, as
  // soon as Finish is called.
  std::optional<grpc::Status> TakeFinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mutex_) {
    if (finished_ || inflight_ > 0 || writing_) return std::nullopt;
    if (!broken_ && (!reads_done_ || !outgoing_.empty())) return std::nullopt;
    finished_ = true;
    return broken_ ? grpc::Status(grpc::StatusCode::CANCELLED, "the stream was cancelled")
                   : grpc::Status::OK;
  }

  ServingState* state_;
  grpc::CallbackServerContext* context_;
  grpc::ByteBuffer incoming_;  // only the read path touches it

  Mutex mutex_;
  std::deque<grpc::ByteBuffer> outgoing_ ABSL_GUARDED_BY(mutex_);
  std::vector<std::shared_ptr<CancellationToken>> tokens_ ABSL_GUARDED_BY(mutex_);
  int inflight_ ABSL_GUARDED_BY(mutex_) = 0;
  bool writing_ ABSL_GUARDED_BY(mutex_) = false;
  bool reads_done_ ABSL_GUARDED_BY(mutex_) = false;
  bool broken_ ABSL_GUARDED_BY(mutex_) = false;
  bool finished_ ABSL_GUARDED_BY(mutex_) = false;
};

}  // namespace

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* TranslationService::TranslateStream(
    grpc::CallbackServerContext* context) {
  return new TranslateStreamReactor(state_, context);
}

}  // namespace quantmt::server
