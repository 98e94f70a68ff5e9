// A model directory loaded for inference: the Transformer on its device in
// its compute type, the tokenizers, and what the model reports about
// itself. Shared by a model's replicas; read-only once built, so any
// number of threads may use one.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "decoding/search.h"
#include "model/transformer.h"
#include "quantmt/engine/tokenizer.h"
#include "quantmt/engine/translation.h"

namespace quantmt {

struct LoadedModel {
  std::shared_ptr<Transformer> transformer;
  // Null when the model takes token ids only (built in memory, not loaded
  // from a directory).
  std::shared_ptr<const Tokenizer> source_tokenizer;
  std::shared_ptr<const Tokenizer> target_tokenizer;
  torch::Device device{torch::kCPU};
  ModelInfo info;
  int64_t weights_bytes = 0;  // parameters and buffers in memory
  bool cuda_graphs = true;    // RuntimeOptions::cuda_graphs
};

// Loads config.json, the weights and the tokenizers of `model_dir` and puts
// the model on the device of `options`. Does not touch thread settings.
absl::StatusOr<std::shared_ptr<LoadedModel>> LoadModelDirectory(const std::string& model_dir,
                                                                const RuntimeOptions& options);

// Puts an already built `transformer` on the device and compute type of
// `options`, without tokenizers (token ids only). `model_dir` is reported in
// the info.
absl::StatusOr<std::shared_ptr<LoadedModel>> PlaceModel(std::shared_ptr<Transformer> transformer,
                                                        const RuntimeOptions& options,
                                                        const std::string& model_dir);

// Longest source (EOS included) the options and the model allow.
int MaxInputLength(const TranslationOptions& options, const ModelConfig& config);

// InvalidArgument when source `index` (token ids ending with EOS) is too
// long or holds an id outside the source vocabulary.
absl::Status CheckSourceIds(const std::vector<int>& source, size_t index, int max_input_length,
                            const ModelConfig& config);

// The search settings of `options` for `config` (lengths capped by the model).
SearchOptions ToSearchOptions(const TranslationOptions& options, const ModelConfig& config);

}  // namespace quantmt
