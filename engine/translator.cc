// The Translator: an Engine with one model, called synchronously.
#include "quantmt/engine/translator.h"

#include <limits>
#include <utility>

namespace quantmt {
namespace {

constexpr char kModelName[] = "model";

class TranslatorImpl : public Translator {
 public:
  TranslatorImpl(std::unique_ptr<Engine> engine, ModelInfo info)
      : engine_(std::move(engine)), info_(std::move(info)) {}

  absl::StatusOr<std::vector<TranslationResult>> Translate(
      const std::vector<std::string>& sentences, const TranslationOptions& options) override {
    TranslationRequest request;
    request.sentences = sentences;
    return Run(std::move(request), options);
  }

  absl::StatusOr<std::vector<TranslationResult>> TranslateIds(
      const std::vector<std::vector<int>>& sources, const TranslationOptions& options) override {
    TranslationRequest request;
    request.source_ids = sources;
    return Run(std::move(request), options);
  }

  const ModelInfo& info() const override { return info_; }

 private:
  absl::StatusOr<std::vector<TranslationResult>> Run(TranslationRequest request,
                                                     const TranslationOptions& options) {
    // The engine refuses a request without sentences; offline, nothing in
    // is nothing out.
    RETURN_IF_ERROR(ValidateTranslationOptions(options));
    if (request.sentences.empty() && request.source_ids.empty()) {
      return std::vector<TranslationResult>();
    }
    request.options = options;
    return engine_->TranslateSync(kModelName, std::move(request)).results;
  }

  std::unique_ptr<Engine> engine_;
  ModelInfo info_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Translator>> Translator::Create(const std::string& model_dir,
                                                               const RuntimeOptions& runtime) {
  ModelSpec spec;
  spec.model_dir = model_dir;
  spec.runtime = runtime;
  return Create(spec);
}

absl::StatusOr<std::unique_ptr<Translator>> Translator::Create(const ModelSpec& spec) {
  ModelSpec model = spec;
  model.name = kModelName;
  model.scheduler.max_queued_sentences = std::numeric_limits<int>::max();
  // Every sentence of a call arrives at once: waiting for more gains nothing.
  model.scheduler.max_batch_wait = absl::ZeroDuration();
  std::unique_ptr<Engine> engine = Engine::Create({});
  RETURN_IF_ERROR(engine->LoadModel(model));
  ASSIGN_OR_RETURN(ModelStatus status, engine->GetModel(kModelName));
  return std::unique_ptr<Translator>(new TranslatorImpl(std::move(engine), std::move(status.info)));
}

}  // namespace quantmt
