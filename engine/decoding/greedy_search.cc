#include <limits>

#include "decoding/search.h"

namespace quantmt {

SearchResults GreedySearch(Transformer& model, const std::vector<std::vector<int64_t>>& sources,
                           const SearchOptions& options, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const ModelConfig& config = model.config();
  const int64_t batch = static_cast<int64_t>(sources.size());
  SearchResults results(sources.size());
  if (batch == 0) return results;

  DecoderState state =
      model.StartDecoding(model.Encode(PadSources(sources, config.pad_id, device)));
  // Row r of the running batch decodes sentence rows[r].
  std::vector<int64_t> rows(batch);
  for (int64_t i = 0; i < batch; ++i) rows[i] = i;
  std::vector<SearchHypothesis> hypotheses(batch);
  auto tokens = torch::full({batch}, static_cast<int64_t>(config.bos_id),
                            torch::TensorOptions().dtype(torch::kLong).device(device));

  for (int64_t step = 0; !rows.empty(); ++step) {
    auto log_probs = torch::log_softmax(model.DecodeStep(tokens, &state).to(torch::kFloat), -1);
    if (step < options.min_length) {
      log_probs.select(1, config.eos_id).fill_(-std::numeric_limits<float>::infinity());
    }
    auto best = log_probs.max(1);
    auto best_tokens = std::get<1>(best).to(torch::kCPU);
    auto best_scores = std::get<0>(best).to(torch::kCPU);
    const int64_t* token_data = best_tokens.data_ptr<int64_t>();
    const float* score_data = best_scores.data_ptr<float>();

    std::vector<int64_t> keep;
    keep.reserve(rows.size());
    for (size_t r = 0; r < rows.size(); ++r) {
      SearchHypothesis& hypothesis = hypotheses[rows[r]];
      hypothesis.log_prob += score_data[r];
      if (token_data[r] == config.eos_id) {
        hypothesis.finished = true;
      } else {
        hypothesis.tokens.push_back(token_data[r]);
        if (static_cast<int>(hypothesis.tokens.size()) < options.max_length) {
          keep.push_back(static_cast<int64_t>(r));
          continue;
        }
      }
      const int64_t length = hypothesis.tokens.size() + (hypothesis.finished ? 1 : 0);
      hypothesis.score = LengthNormalizedScore(hypothesis.log_prob, length, options.length_penalty);
      results[rows[r]].push_back(std::move(hypothesis));
    }
    if (keep.size() != rows.size()) {
      // Finished sentences leave the batch: later steps run on the rest only.
      if (keep.empty()) break;
      auto index = torch::tensor(keep, torch::kLong).to(device);
      state.Select(index);
      best_tokens = best_tokens.index_select(0, index.to(torch::kCPU));
      std::vector<int64_t> next_rows;
      next_rows.reserve(keep.size());
      for (int64_t r : keep) next_rows.push_back(rows[r]);
      rows.swap(next_rows);
    }
    tokens = best_tokens.to(device);
  }
  return results;
}

}  // namespace quantmt
