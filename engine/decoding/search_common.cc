#include <cmath>

#include "decoding/search.h"

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
  if (options.beam_size <= 1) return GreedySearch(model, sources, options, device);
  return BeamSearch(model, sources, options, device);
}

}  // namespace quantmt
