// The Engine: a model repository in front of per-model schedulers. Requests
// are validated and tokenized on the caller's thread, then queued.
#include <condition_variable>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "serving/allocator_tuning.h"
#include "serving/engine_impl.h"
#include "serving/loaded_model.h"
#include "serving/request_state.h"

namespace quantmt {
namespace {

// Token ids of every sentence (EOS appended), or InvalidArgument naming the
// first bad one.
absl::StatusOr<std::vector<std::vector<int>>> Sources(const LoadedModel& model,
                                                      const TranslationRequest& request) {
  const ModelConfig& config = model.transformer->config();
  std::vector<std::vector<int>> sources;
  if (!request.source_ids.empty()) {
    if (!request.sentences.empty()) {
      return absl::InvalidArgumentError("give either sentences or source_ids, not both");
    }
    sources = request.source_ids;
  } else {
    if (model.source_tokenizer == nullptr) {
      return absl::InvalidArgumentError(
          "this model has no tokenizer: send pre-tokenized source_ids");
    }
    sources.resize(request.sentences.size());
    for (size_t i = 0; i < request.sentences.size(); ++i) {
      if (request.sentences[i].empty()) continue;
      std::string error;
      if (!model.source_tokenizer->Encode(request.sentences[i], &sources[i], &error)) {
        return absl::InvalidArgumentError(absl::StrCat("sentence ", i, ": ", error));
      }
      sources[i].push_back(config.eos_id);
    }
  }
  if (sources.empty()) return absl::InvalidArgumentError("the request has no sentences");
  const int max_input = MaxInputLength(request.options, config);
  for (size_t i = 0; i < sources.size(); ++i) {
    RETURN_IF_ERROR(CheckSourceIds(sources[i], i, max_input, config));
  }
  return sources;
}

class EngineImpl : public Engine {
 public:
  EngineImpl(const EngineOptions& options, ModelRepository::Loader loader)
      : observer_(options.observer), repository_(std::move(loader), options.observer) {}
  ~EngineImpl() override { Shutdown(absl::InfiniteDuration()); }

  absl::Status LoadModel(const ModelSpec& spec) override { return repository_.Load(spec); }
  absl::Status UnloadModel(const std::string& name) override { return repository_.Unload(name); }
  std::vector<ModelStatus> ListModels() const override { return repository_.List(); }
  absl::StatusOr<ModelStatus> GetModel(const std::string& name) const override {
    return repository_.Status(name);
  }

  void Translate(const std::string& model, TranslationRequest request,
                 TranslationDone done) override {
    auto refuse = [&](const absl::Status& status) {
      if (observer_ != nullptr) observer_->OnRequestDone(model, status, RequestTimings());
      if (done) done(RequestOutcome{status, RequestTimings()});
    };
    if (absl::Status valid = ValidateTranslationOptions(request.options); !valid.ok()) {
      return refuse(valid);
    }
    // A submission can race a model replacement: the version looked up has
    // just stopped accepting, and its successor is in place: retry there.
    for (int attempt = 0;; ++attempt) {
      absl::StatusOr<std::shared_ptr<ModelVersion>> version = repository_.Get(model);
      if (!version.ok()) return refuse(version.status());
      absl::StatusOr<std::vector<std::vector<int>>> sources = Sources(*(*version)->model, request);
      if (!sources.ok()) return refuse(sources.status());
      auto state = std::make_shared<RequestState>(model, std::move(request), *std::move(sources),
                                                  std::move(done), observer_);
      if (state->pending_sentences() == 0) return state->CompleteIfDone();
      const absl::Status submitted = (*version)->scheduler->Submit(state);
      if (submitted.ok()) return;
      if (attempt < 3 && (*version)->scheduler->stopping()) {
        state->Release(&request, &done);
        continue;
      }
      return state->Fail(submitted);
    }
  }

  void Shutdown(absl::Duration grace) override { repository_.Shutdown(grace); }

 private:
  EngineObserver* const observer_;
  ModelRepository repository_;
};

}  // namespace

std::unique_ptr<Engine> CreateEngine(const EngineOptions& options, ModelRepository::Loader loader) {
  KeepFreedMemoryForReuse();
  return std::make_unique<EngineImpl>(options, std::move(loader));
}

std::unique_ptr<Engine> Engine::Create(const EngineOptions& options) {
  return CreateEngine(options, [](const ModelSpec& spec) {
    return LoadModelDirectory(spec.model_dir, spec.runtime);
  });
}

RequestOutcome Engine::TranslateSync(const std::string& model, TranslationRequest request) {
  std::mutex mu;
  std::condition_variable finished;
  bool ready = false;
  RequestOutcome result{absl::UnknownError("not finished"), RequestTimings()};
  Translate(model, std::move(request), [&](RequestOutcome outcome) {
    std::lock_guard<std::mutex> lock(mu);
    result = std::move(outcome);
    ready = true;
    finished.notify_all();
  });
  std::unique_lock<std::mutex> lock(mu);
  finished.wait(lock, [&] { return ready; });
  return result;
}

const char* ModelStateName(ModelState state) {
  switch (state) {
    case ModelState::kLoading:
      return "loading";
    case ModelState::kReady:
      return "ready";
    case ModelState::kUnloading:
      return "unloading";
    case ModelState::kFailed:
      return "failed";
  }
  return "unknown";
}

}  // namespace quantmt
