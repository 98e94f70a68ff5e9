// Greedy and beam search over a Transformer, batched over sentences of
// different lengths, with cached decoding and finished sentences leaving the
// batch so that no compute is spent on them. All of them run StepDecoder
// (step_decoder.h), the decoder the serving scheduler drives step by step.
//
// Scores: a hypothesis's `log_prob` is the sum of the log-probabilities of
// its tokens, the end-of-sentence token included when it was generated. Its
// `score` is log_prob / length^length_penalty, where length counts the same
// tokens (length_penalty 0 disables normalization). n-best lists are sorted
// by score, best first.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "model/transformer.h"

namespace quantmt {

struct SearchOptions {
  int beam_size = 1;       // 1 = greedy
  int num_hypotheses = 1;  // REQUIRES: 1 <= num_hypotheses <= beam_size
  float length_penalty = 1.0f;
  // At most this many target tokens, not counting end-of-sentence. A
  // hypothesis cut here has no end-of-sentence token.
  int max_length = 256;
  // End-of-sentence is forbidden before this many tokens.
  int min_length = 0;
};

struct SearchHypothesis {
  std::vector<int64_t> tokens;  // without BOS and EOS
  float log_prob = 0.0f;
  float score = 0.0f;
  bool finished = false;  // ended with EOS (false: cut at max_length)
};

// One n-best list per source sentence, in input order. Each source is a
// sequence of token ids ending with EOS; the caller has checked lengths.
using SearchResults = std::vector<std::vector<SearchHypothesis>>;

SearchResults GreedySearch(Transformer& model, const std::vector<std::vector<int64_t>>& sources,
                           const SearchOptions& options, const torch::Device& device);

SearchResults BeamSearch(Transformer& model, const std::vector<std::vector<int64_t>>& sources,
                         const SearchOptions& options, const torch::Device& device);

// Greedy when beam_size == 1, beam search otherwise. (GreedySearch forces
// beam_size 1; BeamSearch with beam_size 1 is greedy search.)
SearchResults Search(Transformer& model, const std::vector<std::vector<int64_t>>& sources,
                     const SearchOptions& options, const torch::Device& device);

// Pads sources to [B, max_len] with pad_id (at the end), int64 on `device`.
torch::Tensor PadSources(const std::vector<std::vector<int64_t>>& sources, int64_t pad_id,
                         const torch::Device& device);

// The normalized score defined above.
float LengthNormalizedScore(float log_prob, int64_t length, float length_penalty);

}  // namespace quantmt
