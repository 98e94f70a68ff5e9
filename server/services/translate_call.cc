// TranslationService.Translate: validate, hand to the engine, answer from the
// engine's completion callback. The call never blocks a gRPC thread.
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
                   const v1::TranslateRequest* request, v1::TranslateResponse* response)
      : state_(state), cancellation_(std::make_shared<CancellationToken>()) {
    Start(context, request, response);
  }

  void OnCancel() override { cancellation_->Cancel(); }
  void OnDone() override { delete this; }

 private:
  void Start(grpc::CallbackServerContext* context, const v1::TranslateRequest* request,
             v1::TranslateResponse* response) {
    if (grpc::Status accepting = state_->CheckAccepting(); !accepting.ok()) {
      return Answer(request->model(), accepting);
    }
    auto validated =
        ValidateTranslateRequest(*request, state_->limits(), state_->default_model());
    if (!validated.ok()) return Answer(request->model(), ToGrpcStatus(validated.status()));

    TranslationRequest engine_request;
    engine_request.sentences = std::move(validated->sentences);
    engine_request.options = validated->options;
    engine_request.deadline = EngineDeadline(*context);
    engine_request.cancellation = cancellation_;
    const std::string model = validated->model;
    const bool return_scores = validated->return_scores;
    state_->metrics().AddInflight(model, +1);
    // `done` runs once, possibly before Translate returns; it finishes the
    // call, after which this reactor may be deleted at any time.
    state_->engine().Translate(
        model, std::move(engine_request),
        [this, model, return_scores, response](RequestOutcome outcome) {
          state_->metrics().AddInflight(model, -1);
          if (!outcome.results.ok()) return Answer(model, ToGrpcStatus(outcome.results.status()));
          response->set_model(model);
          for (const TranslationResult& result : *outcome.results) {
            ToProto(result, return_scores, response->add_translations());
          }
          Answer(model, grpc::Status::OK);
        });
  }

  void Answer(const std::string& model, const grpc::Status& status) {
    state_->Record("Translate", model, status, start_);
    Finish(status);
  }

  ServingState* state_;
  std::shared_ptr<CancellationToken> cancellation_;
  const absl::Time start_ = absl::Now();
};

}  // namespace

grpc::ServerUnaryReactor* TranslationService::Translate(grpc::CallbackServerContext* context,
                                                        const v1::TranslateRequest* request,
                                                        v1::TranslateResponse* response) {
  return new TranslateReactor(state_, context, request, response);
}

}  // namespace quantmt::server
