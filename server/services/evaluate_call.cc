// TranslationService.Evaluate: translates each test set through the engine
// in chunks (progress after each) and scores it with BLEU and chrF.
#include "absl/strings/str_cat.h"
#include "quantmt/eval/bleu.h"
#include "quantmt/eval/chrf.h"
#include "quantmt/eval/test_sets.h"
#include "server/admission/request_validation.h"
#include "server/convert/status_conversion.h"
#include "server/services/streaming_job.h"
#include "server/services/test_sets.h"
#include "server/services/translation_service.h"

namespace quantmt::server {
namespace {

using EvaluateJob = StreamingJob<v1::EvaluateResponse>;

constexpr size_t kMaxChunkSentences = 32;

struct LoadedSet {
  std::string domain, name;
  std::vector<std::string> sources, references;
};

// Inline sets plus the named ones from the data directory, checked.
absl::StatusOr<std::vector<LoadedSet>> GatherSets(const v1::EvaluateRequest& request,
                                                  const ServingState& state,
                                                  const ModelStatus& model) {
  std::vector<LoadedSet> sets;
  for (const v1::TestSet& set : request.test_sets()) {
    if (set.sources_size() != set.references_size() || set.sources_size() == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "test set \"", set.name(), "\" has ", set.sources_size(), " sources and ",
          set.references_size(), " references: send one reference per source, at least one"));
    }
    sets.push_back({set.domain(),
                    set.name(),
                    {set.sources().begin(), set.sources().end()},
                    {set.references().begin(), set.references().end()}});
  }
  if (!request.data_sets().empty() || request.test_sets().empty()) {
    if (state.data_dir().empty()) {
      return absl::FailedPreconditionError(
          "the server has no data directory (--data_dir): send the test sets inline");
    }
    const auto available = eval::FindTestSets(state.data_dir(), model.info.source_language,
                                              model.info.target_language);
    std::vector<eval::TestSetFiles> files = available;
    if (!request.data_sets().empty()) {
      ASSIGN_OR_RETURN(files, SelectTestSets(available, {request.data_sets().begin(),
                                                         request.data_sets().end()}));
    }
    if (files.empty()) {
      return absl::NotFoundError(absl::StrCat("the server's data directory has no test*.",
                                              model.info.source_language, " / test*.",
                                              model.info.target_language, " pairs"));
    }
    for (const eval::TestSetFiles& file : files) {
      LoadedSet set{file.domain, file.name, {}, {}};
      ASSIGN_OR_RETURN(set.sources, eval::ReadLines(file.source_path, request.max_lines()));
      ASSIGN_OR_RETURN(set.references, eval::ReadLines(file.reference_path, request.max_lines()));
      if (set.sources.size() != set.references.size() || set.sources.empty()) {
        return absl::FailedPreconditionError(
            absl::StrCat("test set ", file.domain, "/", file.name, " has ", set.sources.size(),
                         " source and ", set.references.size(), " reference lines on the server"));
      }
      sets.push_back(std::move(set));
    }
  }
  size_t lines = 0;
  for (LoadedSet& set : sets) {
    if (request.max_lines() > 0 && set.sources.size() > size_t(request.max_lines())) {
      set.sources.resize(request.max_lines());
      set.references.resize(request.max_lines());
    }
    lines += set.sources.size();
  }
  if (lines > size_t(state.limits().max_evaluate_lines)) {
    return absl::InvalidArgumentError(
        absl::StrCat("the evaluation has ", lines, " lines; the limit is ",
                     state.limits().max_evaluate_lines, ": use max_lines or fewer test sets"));
  }
  return sets;
}

// Translates a chunk; a chunk the engine refuses as invalid (a sentence too
// long for the model) is retried line by line, and refused lines get an
// empty hypothesis so that the set is still scored. Other errors (queue
// full, cancelled, shutting down) end the evaluation.
absl::Status TranslateChunk(ServingState& state, const std::string& model,
                            TranslationRequest request, std::vector<std::string>* hypotheses,
                            int* refused, int64_t* source_tokens) {
  const std::vector<std::string> sentences = request.sentences;
  RequestOutcome outcome = state.engine().TranslateSync(model, request);
  // A full queue is other clients' traffic: wait for room rather than fail
  // the whole evaluation (the deadline and cancellation still apply).
  while (absl::IsResourceExhausted(outcome.results.status()) &&
         !request.cancellation->cancelled() && absl::Now() < request.deadline) {
    absl::SleepFor(absl::Milliseconds(50));
    outcome = state.engine().TranslateSync(model, request);
  }
  if (outcome.results.ok()) {
    for (const TranslationResult& result : *outcome.results) {
      hypotheses->push_back(result.hypotheses.empty() ? "" : result.hypotheses[0].text);
      *source_tokens += result.source_tokens;
    }
    return absl::OkStatus();
  }
  if (!absl::IsInvalidArgument(outcome.results.status()) || sentences.size() == 1) {
    if (!absl::IsInvalidArgument(outcome.results.status())) return outcome.results.status();
    hypotheses->emplace_back();
    ++*refused;
    return absl::OkStatus();
  }
  for (const std::string& sentence : sentences) {
    request.sentences = {sentence};
    RETURN_IF_ERROR(TranslateChunk(state, model, request, hypotheses, refused, source_tokens));
  }
  return absl::OkStatus();
}

grpc::Status RunEvaluation(ServingState& state, grpc::CallbackServerContext& context,
                           const v1::EvaluateRequest& request, const std::string& model,
                           EvaluateJob& job) {
  if (auto size = ValidateMessageSize(request.ByteSizeLong(), state.limits()); !size.ok()) {
    return ToGrpcStatus(size);
  }
  if (grpc::Status accepting = state.CheckAccepting(); !accepting.ok()) return accepting;
  if (model.empty()) return ToGrpcStatus(absl::NotFoundError("the server has no model loaded"));
  auto status = state.engine().GetModel(model);
  if (!status.ok()) return ToGrpcStatus(status.status());
  auto options = ValidateOptions(request.options(), state.limits());
  if (!options.ok()) return ToGrpcStatus(options.status());
  if (request.max_lines() < 0) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "max_lines must be 0 (all) or more");
  }
  auto sets = GatherSets(request, state, *status);
  if (!sets.ok()) return ToGrpcStatus(sets.status());

  // A chunk never exceeds the queue, or it could never be admitted.
  const size_t chunk_sentences = std::max<size_t>(
      1,
      std::min<size_t>(kMaxChunkSentences, state.model_defaults().scheduler.max_queued_sentences));
  v1::EvaluateResponse final_response;
  v1::EvaluateResult* result = final_response.mutable_result();
  result->set_model(model);
  for (const LoadedSet& set : *sets) {
    const absl::Time begin = absl::Now();
    std::vector<std::string> hypotheses;
    int refused = 0;
    int64_t source_tokens = 0;
    for (size_t offset = 0; offset < set.sources.size(); offset += chunk_sentences) {
      TranslationRequest chunk;
      const size_t end = std::min(set.sources.size(), offset + chunk_sentences);
      chunk.sentences.assign(set.sources.begin() + offset, set.sources.begin() + end);
      chunk.options = *options;
      chunk.deadline = EngineDeadline(context);
      chunk.cancellation = job.cancellation();
      auto translated =
          TranslateChunk(state, model, std::move(chunk), &hypotheses, &refused, &source_tokens);
      if (!translated.ok()) return ToGrpcStatus(translated);
      v1::EvaluateResponse progress;
      progress.mutable_progress()->set_domain(set.domain);
      progress.mutable_progress()->set_name(set.name);
      progress.mutable_progress()->set_lines_done(static_cast<int>(end));
      progress.mutable_progress()->set_lines_total(static_cast<int>(set.sources.size()));
      if (!job.Send(progress)) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - begin);
    auto bleu = eval::CorpusBleu(hypotheses, {set.references});
    if (!bleu.ok()) return ToGrpcStatus(bleu.status());
    auto chrf = eval::CorpusChrf(hypotheses, {set.references});
    if (!chrf.ok()) return ToGrpcStatus(chrf.status());
    v1::TestSetScore* score = result->add_scores();
    score->set_domain(set.domain);
    score->set_name(set.name);
    score->set_lines(static_cast<int>(set.sources.size()));
    score->set_bleu(bleu->score);
    score->set_chrf(chrf->score);
    score->set_refused_lines(refused);
    score->set_seconds(seconds);
    score->set_source_tokens_per_second(source_tokens / std::max(seconds, 1e-9));
    result->set_bleu_signature(bleu->signature);
    result->set_chrf_signature(chrf->signature);
  }
  if (!job.Send(final_response)) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
  return grpc::Status::OK;
}

}  // namespace

grpc::ServerWriteReactor<v1::EvaluateResponse>* TranslationService::Evaluate(
    grpc::CallbackServerContext* context, const v1::EvaluateRequest* request) {
  const absl::Time start = absl::Now();
  const std::string model = request->model().empty() ? state_->default_model() : request->model();
  ServingState* state = state_;
  auto on_finish = [state, model, start](const grpc::Status& status) {
    state->Record("Evaluate", model, status, start);
  };
  if (!state_->TryStartJob()) {
    return EvaluateJob::Start(
        [](EvaluateJob&) {
          return grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                              "other benchmark or evaluate jobs are running: retry later");
        },
        on_finish);
  }
  return EvaluateJob::Start(
      [state, context, request, model](EvaluateJob& job) {
        grpc::Status status = RunEvaluation(*state, *context, *request, model, job);
        state->JobDone();
        return status;
      },
      on_finish);
}

}  // namespace quantmt::server
