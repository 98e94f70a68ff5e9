// quantmt.v1.TranslationService on the gRPC callback API. Each RPC lives in
// its own file: translate_call.cc, translate_stream_call.cc,
// benchmark_call.cc, evaluate_call.cc.
//
// Translate and TranslateStream take their requests as raw bytes and parse
// them here: protobuf refuses a proto3 string holding invalid UTF-8, and
// gRPC would answer that with INTERNAL "failed to parse" (ending a stream);
// parsing here answers INVALID_ARGUMENT with a message that says what to fix.
#pragma once

#include "quantmt/v1/translation.grpc.pb.h"
#include "server/services/serving_state.h"

namespace quantmt::server {

class TranslationService final : public v1::TranslationService::WithRawCallbackMethod_Translate<
                                     v1::TranslationService::WithRawCallbackMethod_TranslateStream<
                                         v1::TranslationService::WithCallbackMethod_Benchmark<
                                             v1::TranslationService::WithCallbackMethod_Evaluate<
                                                 v1::TranslationService::Service>>>> {
 public:
  explicit TranslationService(ServingState* state) : state_(state) {}

  grpc::ServerUnaryReactor* Translate(grpc::CallbackServerContext* context,
                                      const grpc::ByteBuffer* request,
                                      grpc::ByteBuffer* response) override;
  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* TranslateStream(
      grpc::CallbackServerContext* context) override;
  grpc::ServerWriteReactor<v1::BenchmarkResponse>* Benchmark(
      grpc::CallbackServerContext* context, const v1::BenchmarkRequest* request) override;
  grpc::ServerWriteReactor<v1::EvaluateResponse>* Evaluate(
      grpc::CallbackServerContext* context, const v1::EvaluateRequest* request) override;

 private:
  ServingState* state_;
};

// Parses a raw request; InvalidArgument names the message type and says
// that strings must be UTF-8.
template <typename Message>
grpc::Status ParseRequest(const grpc::ByteBuffer& raw, Message* message) {
  grpc::ByteBuffer bytes(raw);  // shares the slices; parsing consumes the copy
  if (grpc::SerializationTraits<Message>::Deserialize(&bytes, message).ok()) {
    return grpc::Status::OK;
  }
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      "the message is not a valid " + Message::descriptor()->full_name() +
                          ": every string (sentences, model) must be valid UTF-8");
}

// The call's deadline as the engine takes it.
absl::Time EngineDeadline(const grpc::CallbackServerContext& context);

}  // namespace quantmt::server
