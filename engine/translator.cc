// The Translator: tokenizer + Transformer + search, behind the plain-C++ API.
#include "quantmt/engine/translator.h"

#include <torch/torch.h>

#include <algorithm>
#include <thread>

#include "absl/strings/str_cat.h"
#include "decoding/cuda_graph_decoder.h"
#include "decoding/search.h"
#include "serving/loaded_model.h"

namespace quantmt {
namespace {

class TranslatorImpl : public Translator {
 public:
  explicit TranslatorImpl(std::shared_ptr<LoadedModel> model) : model_(std::move(model)) {
    // Greedy search on a GPU runs on CUDA graphs where the model allows
    // (float weights); otherwise, and for beam search, the eager path serves.
    // (Beam search on the serving engine's graph decoder was measured slower
    // here: a one-off run pays a capture for every new shape, while a
    // serving replica captures once and replays; docs/benchmarks.md.)
    if (model_->device.is_cuda() && model_->cuda_graphs) {
      auto graphs = CudaGraphDecoder::Create(*model_->transformer);
      if (graphs.ok()) graph_decoder_ = std::move(*graphs);
    }
  }

  absl::StatusOr<std::vector<TranslationResult>> Translate(
      const std::vector<std::string>& sentences, const TranslationOptions& options) override {
    RETURN_IF_ERROR(ValidateTranslationOptions(options));
    std::vector<std::vector<int>> sources(sentences.size());
    for (size_t i = 0; i < sentences.size(); ++i) {
      if (sentences[i].empty()) continue;  // translated to "" without the model
      std::string error;
      if (!model_->source_tokenizer->Encode(sentences[i], &sources[i], &error)) {
        return absl::InvalidArgumentError(absl::StrCat("sentence ", i, ": ", error));
      }
      sources[i].push_back(model_->transformer->config().eos_id);
    }
    ASSIGN_OR_RETURN(auto results, TranslateIds(sources, options));
    for (auto& result : results) {
      for (auto& hypothesis : result.hypotheses) {
        hypothesis.text = model_->target_tokenizer->Decode(hypothesis.token_ids);
      }
    }
    return results;
  }

  absl::StatusOr<std::vector<TranslationResult>> TranslateIds(
      const std::vector<std::vector<int>>& sources, const TranslationOptions& options) override {
    RETURN_IF_ERROR(ValidateTranslationOptions(options));
    const ModelConfig& config = model_->transformer->config();
    const int max_input = MaxInputLength(options, config);
    std::vector<TranslationResult> results(sources.size());
    std::vector<size_t> order;  // non-empty sources, sorted by length
    for (size_t i = 0; i < sources.size(); ++i) {
      const auto& source = sources[i];
      results[i].source_tokens = static_cast<int>(source.size());
      if (source.empty()) {
        results[i].hypotheses.resize(1);
        continue;
      }
      RETURN_IF_ERROR(CheckSourceIds(source, i, max_input, config));
      order.push_back(i);
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return sources[a].size() < sources[b].size(); });
    const SearchOptions search = ToSearchOptions(options, config);

    try {
      for (size_t begin = 0; begin < order.size(); begin += options.max_batch_size) {
        const size_t end = std::min(order.size(), begin + options.max_batch_size);
        std::vector<std::vector<int64_t>> batch;
        for (size_t k = begin; k < end; ++k) {
          batch.emplace_back(sources[order[k]].begin(), sources[order[k]].end());
        }
        SearchResults found;
        if (graph_decoder_ && search.beam_size == 1) {
          ASSIGN_OR_RETURN(found, graph_decoder_->GreedySearch(batch, search));
        } else {
          found = Search(*model_->transformer, batch, search, model_->device);
        }
        for (size_t k = begin; k < end; ++k) {
          for (auto& hypothesis : found[k - begin]) {
            Hypothesis out;
            out.token_ids.assign(hypothesis.tokens.begin(), hypothesis.tokens.end());
            out.score = hypothesis.score;
            out.log_prob = hypothesis.log_prob;
            results[order[k]].hypotheses.push_back(std::move(out));
          }
        }
      }
    } catch (const std::exception& e) {
      // LibTorch reports failures (out of memory, device errors) as exceptions.
      return absl::InternalError(absl::StrCat("translation failed: ", e.what()));
    }
    return results;
  }

  const ModelInfo& info() const override { return model_->info; }

 private:
  std::shared_ptr<LoadedModel> model_;
  std::unique_ptr<CudaGraphDecoder> graph_decoder_;  // CUDA float models only
};

}  // namespace

absl::StatusOr<std::unique_ptr<Translator>> Translator::Create(const std::string& model_dir,
                                                               const RuntimeOptions& options) {
  if (options.device == DeviceKind::kCpu) {
    const int threads = options.num_threads > 0
                            ? options.num_threads
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    torch::set_num_threads(threads);
  }
  ASSIGN_OR_RETURN(std::shared_ptr<LoadedModel> model, LoadModelDirectory(model_dir, options));
  return std::unique_ptr<Translator>(new TranslatorImpl(std::move(model)));
}

}  // namespace quantmt
