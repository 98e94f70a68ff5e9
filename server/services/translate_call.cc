// TranslationService.Translate: validate, hand to the engine, answer from the
// engine's completion callback. The call never blocks a gRPC thread.
#include <atomic>

#include "server/admission/request_validation.h"
#include "server/convert/proto_conversion.h"
#include "server/convert/status_conversion.h"
#include "server/services/translation_service.h"

namespace quantmt::server {

absl::Time EngineDeadline(const grpc::CallbackServerContext& context) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return absl::InfiniteFuture();
  return absl::FromChrono(deadline);
}

namespace {

// Owns one Translate call: a client cancel reaches the engine through the
// cancellation token, and the engine's callback finishes the call.
class TranslateReactor : public grpc::ServerUnaryReactor {
 public:
  TranslateReactor(ServingState* state, grpc::CallbackServerContext* context,
                   const grpc::ByteBuffer* request, grpc::ByteBuffer* response)
      : state_(state),
        context_(context),
        cancellation_(std::make_shared<CancellationToken>()),
        response_(response),
        deadline_(EngineDeadline(*context)) {
    if (!request->Valid()) {
      // No message at all (not even an empty one): the client cancelled or
      // went away before sending it.
      Answer("", grpc::Status(grpc::StatusCode::CANCELLED, "the request message never arrived"));
      return;
    }
    // Refused before parsing: its model is not known, so it counts as "".
    if (auto size = ValidateMessageSize(request->Length(), state_->limits()); !size.ok()) {
      Answer("", ToGrpcStatus(size));
      return;
    }
    grpc::Status parsed = ParseRequest(*request, &request_);
    if (parsed.ok()) {
      Start(context);
    } else {
      Answer("", parsed);
    }
  }

  void OnCancel() override {
    cancelled_at_.store(absl::ToUnixNanos(absl::Now()));
    cancellation_->Cancel();
  }
  void OnDone() override { delete this; }

 private:
  void Start(grpc::CallbackServerContext* context) {
    const v1::TranslateRequest* request = &request_;
    if (grpc::Status accepting = state_->CheckAccepting(); !accepting.ok()) {
      return Answer(request->model(), accepting);
    }
    auto validated = ValidateTranslateRequest(*request, state_->limits(), state_->default_model());
    if (!validated.ok()) return Answer(request->model(), ToGrpcStatus(validated.status()));

    TranslationRequest engine_request;
    engine_request.sentences = std::move(validated->sentences);
    engine_request.options = validated->options;
    engine_request.deadline = deadline_;
    engine_request.cancellation = cancellation_;
    const std::string model = validated->model;
    const bool return_scores = validated->return_scores;
    // The label is fixed now: +1 and -1 must meet in the same series.
    const std::string label = state_->MetricLabel(model);
    state_->metrics().AddInflight(label, +1);
    // `done` runs once, possibly before Translate returns; it finishes the
    // call, after which this reactor may be deleted at any time.
    state_->engine().Translate(model, std::move(engine_request),
                               [this, model, label, return_scores](RequestOutcome outcome) {
                                 state_->metrics().AddInflight(label, -1);
                                 if (!outcome.results.ok())
                                   return Answer(model, ToGrpcStatus(outcome.results.status()));
                                 v1::TranslateResponse response;
                                 response.set_model(model);
                                 for (const TranslationResult& result : *outcome.results) {
                                   ToProto(result, return_scores, response.add_translations());
                                 }
                                 bool own_buffer = false;
                                 grpc::Status serialized =
                                     grpc::SerializationTraits<v1::TranslateResponse>::Serialize(
                                         response, response_, &own_buffer);
                                 Answer(model, serialized);
                               });
  }

  void Answer(const std::string& model, const grpc::Status& status) {
    state_->Record("Translate", model, AsTheClientSeesIt(status), start_);
    Finish(status);
  }

  // Once gRPC has cancelled the call, the client gets CANCELLED, or
  // DEADLINE_EXCEEDED when the deadline was the cause, whatever the engine
  // answered (often "cancelled", through the token): the metrics count that.
  // A call cancelled before its request arrived reaches us with an empty
  // request (and no OnCancel yet): gRPC's own flag tells.
  grpc::Status AsTheClientSeesIt(const grpc::Status& status) const {
    absl::Time cancelled_at = absl::FromUnixNanos(cancelled_at_.load());
    if (cancelled_at_.load() == kNotCancelled) {
      if (!context_->IsCancelled()) return status;
      cancelled_at = absl::Now();
    }
    if (cancelled_at >= deadline_) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "deadline exceeded");
    }
    return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled by the client");
  }

  ServingState* state_;
  grpc::CallbackServerContext* context_;  // valid until OnDone
  std::shared_ptr<CancellationToken> cancellation_;
  grpc::ByteBuffer* response_;
  const absl::Time deadline_;
  v1::TranslateRequest request_;
  const absl::Time start_ = absl::Now();
  static constexpr int64_t kNotCancelled = 0;
  std::atomic<int64_t> cancelled_at_{kNotCancelled};  // Unix ns of OnCancel
};

}  // namespace

grpc::ServerUnaryReactor* TranslationService::Translate(grpc::CallbackServerContext* context,
                                                        const grpc::ByteBuffer* request,
                                                        grpc::ByteBuffer* response) {
  return new TranslateReactor(state_, context, request, response);
}

}  // namespace quantmt::server
