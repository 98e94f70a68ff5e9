#include <cmath>

#include "decoding/search.h"
#include "decoding/step_decoder.h"

namespace quantmt {

torch::Tensor PadSources(const std::vector<std::vector<int64_t>>& sources, int64_t pad_id,
                         const torch::Device& device) {
  size_t max_len = 1;
  for (const auto& source : sources) max_len = std::max(max_len, source.size());
  auto padded = torch::full({static_cast<int64_t>(sources.size()), static_cast<int64_t>(max_len)},
                            pad_id, torch::kLong);
  auto accessor = padded.accessor<int64_t, 2>();
  for (size_t i = 0; i < sources.size(); ++i) {
    for (size_t j = 0; j < sources[i].size(); ++j) accessor[i][j] = sources[i][j];
  }
  return padded.to(device);
}

float LengthNormalizedScore(float log_prob, int64_t length, float length_penalty) {
  if (length_penalty == 0.0f || length <= 0) return log_prob;
  return log_prob / std::pow(static_cast<float>(length), length_penalty);
}

SearchResults Search(Transformer& model, const std::vector<std::vector<int64_t>>& sources,
                     const SearchOptions& options, const torch::Device& device) {
  SearchResults results(sources.size());
  if (sources.empty()) return results;
  std::vector<DecodeInput> inputs(sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    inputs[i].id = static_cast<int64_t>(i);
    inputs[i].source = sources[i];
    inputs[i].options = options;
  }
  StepDecoder decoder(model, device);
  decoder.Add(inputs);
  while (!decoder.empty()) {
    for (DecodeOutput& output : decoder.Step()) results[output.id] = std::move(output.hypotheses);
  }
  return results;
}

SearchResults GreedySearch(Transformer& model, const std::vector<std::vector<int64_t>>& sources,
                           const SearchOptions& options, const torch::Device& device) {
  SearchOptions greedy = options;
  greedy.beam_size = greedy.num_hypotheses = 1;
  return Search(model, sources, greedy, device);
}

SearchResults BeamSearch(Transformer& model, const std::vector<std::vector<int64_t>>& sources,
                         const SearchOptions& options, const torch::Device& device) {
  return Search(model, sources, options, device);
}

}  // namespace quantmt
