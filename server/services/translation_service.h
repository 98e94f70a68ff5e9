// quantmt.v1.TranslationService on the gRPC callback API. Each RPC lives in
// its own file: translate_call.cc, translate_stream_call.cc,
// benchmark_call.cc, evaluate_call.cc.
#pragma once

#include "quantmt/v1/translation.grpc.pb.h"
#include "server/services/serving_state.h"

namespace quantmt::server {

class TranslationService final : public v1::TranslationService::CallbackService {
 public:
  explicit TranslationService(ServingState* state) : state_(state) {}

  grpc::ServerUnaryReactor* Translate(grpc::CallbackServerContext* context,
                                      const v1::TranslateRequest* request,
                                      v1::TranslateResponse* response) override;
  grpc::ServerBidiReactor<v1::TranslateStreamRequest, v1::TranslateStreamResponse>*
  TranslateStream(grpc::CallbackServerContext* context) override;
  grpc::ServerWriteReactor<v1::BenchmarkResponse>* Benchmark(
      grpc::CallbackServerContext* context, const v1::BenchmarkRequest* request) override;
  grpc::ServerWriteReactor<v1::EvaluateResponse>* Evaluate(
      grpc::CallbackServerContext* context, const v1::EvaluateRequest* request) override;

 private:
  ServingState* state_;
};

// The call's deadline as the engine takes it.
absl::Time EngineDeadline(const grpc::CallbackServerContext& context);

}  // namespace quantmt::server
