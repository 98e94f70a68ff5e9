// TranslationService.Benchmark: timed requests of each batch size through
// the engine's scheduler, as a client would send them (tokenization
// included), one at a time so that the latency is the request's own.
#include <algorithm>

#include "absl/strings/str_cat.h"
#include "quantmt/eval/percentile.h"
#include "server/admission/request_validation.h"
#include "server/convert/status_conversion.h"
#include "server/services/streaming_job.h"
#include "server/services/translation_service.h"

namespace quantmt::server {
namespace {

// German news-style sentences of 10 to 30 words, used when the request
// brings none.
const char* const kBuiltinSentences[] = {
    "Die Regierung hat am Dienstag neue Maßnahmen angekündigt, um die steigenden Energiepreise "
    "für Haushalte und kleine Unternehmen zu begrenzen.",
    "Ein kleiner Hund rennt über die Wiese.",
    "Nach Angaben der Polizei wurde bei dem Unfall auf der Autobahn niemand schwer verletzt.",
    "Die Forscher untersuchten, wie sich der Klimawandel auf die Wanderung der Vögel in Europa "
    "auswirkt, und veröffentlichten ihre Ergebnisse in einer Fachzeitschrift.",
    "Morgen wird es im Norden regnerisch, im Süden bleibt es sonnig und warm.",
    "Der Verein bestätigte, dass der Trainer seinen Vertrag um zwei weitere Jahre verlängert hat.",
    "Viele Menschen arbeiten inzwischen von zu Hause aus, was die Nachfrage nach Büroflächen in "
    "den Innenstädten deutlich verringert hat.",
    "Das Museum zeigt ab nächster Woche eine Ausstellung über die Geschichte der Stadt.",
};

}  // namespace

grpc::ServerWriteReactor<v1::BenchmarkResponse>* TranslationService::Benchmark(
    grpc::CallbackServerContext* context, const v1::BenchmarkRequest* request) {
  const absl::Time start = absl::Now();
  const std::string model = request->model().empty() ? state_->default_model() : request->model();
  ServingState* state = state_;
  auto on_finish = [state, model, start](const grpc::Status& status) {
    state->Record("Benchmark", model, status, start);
  };
  if (!state_->TryStartJob()) {
    return StreamingJob<v1::BenchmarkResponse>::Start(
        [](auto&) {
          return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "other benchmark or evaluate jobs are running: retry later");
        },
        on_finish);
  }
  auto body = [state, context, request, model](StreamingJob<v1::BenchmarkResponse>& job) {
    struct JobSlot {
      ServingState* state;
      ~JobSlot() { state->JobDone(); }
    } slot{state};
    const RequestLimits& limits = state->limits();
    if (auto size = ValidateMessageSize(request->ByteSizeLong(), limits); !size.ok()) {
      return ToGrpcStatus(size);
    }
    if (grpc::Status accepting = state->CheckAccepting(); !accepting.ok()) return accepting;
    auto status = state->engine().GetModel(model);
    if (!status.ok()) {
      return ToGrpcStatus(model.empty() ? absl::NotFoundError("the server has no model loaded")
                                        : status.status());
    }
    v1::TranslationOptions proto_options = request->options();
    if (proto_options.beam_size() == 0) proto_options.set_beam_size(1);
    auto options = ValidateOptions(proto_options, limits);
    if (!options.ok()) return ToGrpcStatus(options.status());
    std::vector<std::string> inputs(request->sentences().begin(), request->sentences().end());
    if (inputs.empty()) inputs.assign(std::begin(kBuiltinSentences), std::end(kBuiltinSentences));
    for (size_t i = 0; i < inputs.size(); ++i) {
      auto valid = ValidateSentence(inputs[i], absl::StrCat("sentence ", i), limits);
      if (!valid.ok()) return ToGrpcStatus(valid);
    }
    std::vector<int> batch_sizes(request->batch_sizes().begin(), request->batch_sizes().end());
    if (batch_sizes.empty()) batch_sizes = {1, 8, 32};
    for (int batch_size : batch_sizes) {
      if (batch_size < 1 || batch_size > limits.max_sentences) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            absl::StrCat("batch size ", batch_size, " is out of range: use 1 to ",
                                         limits.max_sentences));
      }
    }
    const int iterations = request->iterations() == 0 ? 5 : request->iterations();
    if (iterations < 1 || iterations > limits.max_benchmark_iterations) {
      return grpc::Status(
          grpc::StatusCode::INVALID_ARGUMENT,
          absl::StrCat("iterations ", request->iterations(), " is out of range: use 1 to ",
                       limits.max_benchmark_iterations, ", or 0 for 5"));
    }

    v1::BenchmarkResponse final_response;
    v1::BenchmarkResult* result = final_response.mutable_result();
    result->set_model(model);
    result->set_precision(status->info.quantization);
    result->set_device(status->info.device);
    result->set_weights_bytes(status->weights_bytes);
    for (int batch_size : batch_sizes) {
      TranslationRequest translation;
      for (int i = 0; i < batch_size; ++i)
        translation.sentences.push_back(inputs[i % inputs.size()]);
      translation.options = *options;
      translation.deadline = EngineDeadline(*context);
      translation.cancellation = job.cancellation();
      std::vector<double> latencies;
      int64_t source_tokens = 0, generated_tokens = 0;
      double wall_seconds = 0;
      for (int iteration = 0; iteration <= iterations; ++iteration) {  // 0 is the warm-up
        const absl::Time begin = absl::Now();
        RequestOutcome outcome = state->engine().TranslateSync(model, translation);
        const double seconds = absl::ToDoubleSeconds(absl::Now() - begin);
        if (!outcome.results.ok()) return ToGrpcStatus(outcome.results.status());
        if (iteration == 0) continue;
        latencies.push_back(seconds);
        wall_seconds += seconds;
        source_tokens += outcome.timings.source_tokens;
        generated_tokens += outcome.timings.generated_tokens;
        v1::BenchmarkResponse progress;
        progress.mutable_progress()->set_batch_size(batch_size);
        progress.mutable_progress()->set_iteration(iteration);
        progress.mutable_progress()->set_iterations(iterations);
        if (!job.Send(progress)) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
      }
      std::sort(latencies.begin(), latencies.end());
      v1::BatchSizeResult* batch = result->add_batches();
      batch->set_batch_size(batch_size);
      batch->set_requests(iterations);
      batch->set_source_tokens(source_tokens);
      batch->set_generated_tokens(generated_tokens);
      batch->set_generated_tokens_per_second(generated_tokens / std::max(wall_seconds, 1e-9));
      batch->set_sentences_per_second(double(batch_size) * iterations /
                                      std::max(wall_seconds, 1e-9));
      v1::LatencySummary* latency = batch->mutable_latency();
      latency->set_mean_seconds(wall_seconds / iterations);
      latency->set_p50_seconds(eval::Percentile(latencies, 0.5));
      latency->set_p90_seconds(eval::Percentile(latencies, 0.9));
      latency->set_p99_seconds(eval::Percentile(latencies, 0.99));
      latency->set_max_seconds(latencies.back());
    }
    result->set_process_resident_memory_bytes(ProcessResidentBytes());
    if (!job.Send(final_response)) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    return grpc::Status::OK;
  };
  return StreamingJob<v1::BenchmarkResponse>::Start(std::move(body), on_finish);
}

}  // namespace quantmt::server
