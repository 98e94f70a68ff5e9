// quantmt's offline API: translate sentences with a model directory, one
// call at a time, without a server.
//
// A Translator is the serving Engine (engine.h) with one model, called
// synchronously: the same validation, tokenization, batching and decoders
// as the server, so offline and served translations are the same.
//
//   auto translator = quantmt::Translator::Create("models/de-en", {});
//   if (!translator.ok()) ...
//   auto results = (*translator)->Translate({"Ein Hund rennt."}, {});
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "quantmt/engine/engine.h"
#include "quantmt/engine/status.h"
#include "quantmt/engine/translation.h"

namespace quantmt {

class Translator {
 public:
  // Loads and validates the model directory (config.json, weights, tokenizer)
  // with `runtime` and the engine's default batching.
  static absl::StatusOr<std::unique_ptr<Translator>> Create(const std::string& model_dir,
                                                            const RuntimeOptions& runtime);
  // The same with every setting of a served model (spec.name is ignored).
  // The queue is unbounded: a Translator's input is already in memory.
  static absl::StatusOr<std::unique_ptr<Translator>> Create(const ModelSpec& spec);
  virtual ~Translator() = default;

  // Translates every sentence, or fails as a whole with InvalidArgument
  // naming the first bad sentence (invalid UTF-8, too many tokens) or option.
  // An empty sentence translates to an empty hypothesis.
  // Thread-compatible: one call at a time per Translator.
  virtual absl::StatusOr<std::vector<TranslationResult>> Translate(
      const std::vector<std::string>& sentences, const TranslationOptions& options) = 0;

  // The same on token ids (each source ends with end-of-sentence); `text`
  // stays empty. Used by tests and benchmarks.
  virtual absl::StatusOr<std::vector<TranslationResult>> TranslateIds(
      const std::vector<std::vector<int>>& sources, const TranslationOptions& options) = 0;

  virtual const ModelInfo& info() const = 0;
};

}  // namespace quantmt
