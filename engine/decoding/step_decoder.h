// The one decoder behind every search: a running batch that advances one
// token per Step(), with sentences joining (Add) and leaving (finished,
// Remove) between steps. Greedy and beam search, static and continuous
// batching are all this class; GreedySearch/BeamSearch in search.h add every
// sentence at once and step until the batch is empty.
//
// Each sentence is a group of rows: one for greedy search, `beam_size` for
// beam search, joining and leaving as a unit. Sentences may carry different
// options (beam size, lengths, length penalty).
//
// Thread-compatible: one thread drives a StepDecoder; several StepDecoders
// may share one Transformer (see Transformer::DecodeStep).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <vector>

#include "decoding/search.h"
#include "model/transformer.h"

namespace quantmt {

// One sentence to decode.
struct DecodeInput {
  int64_t id = 0;               // the caller's handle, reported back
  std::vector<int64_t> source;  // token ids ending with EOS; REQUIRES: not empty
  SearchOptions options;
};

struct DecodeOutput {
  int64_t id = 0;
  std::vector<SearchHypothesis> hypotheses;  // n-best, best first
};

class StepDecoder {
 public:
  StepDecoder(Transformer& model, const torch::Device& device);

  // Encodes `inputs` in one encoder pass and adds them to the running batch;
  // they take their first step at the next Step(). Sorting them by length
  // first cuts padding.
  void Add(const std::vector<DecodeInput>& inputs);

  // One decoding step for every row. Returns the sentences that finished in
  // it; they have left the batch.
  std::vector<DecodeOutput> Step();

  // Removes the sentences whose id `drop` selects (e.g. cancelled); returns
  // their ids.
  std::vector<int64_t> RemoveIf(const std::function<bool(int64_t id)>& drop);

  // The best live prefix of every sentence in the batch (for streaming).
  void ForEachBestPrefix(
      const std::function<void(int64_t id, const std::vector<int64_t>& tokens)>& visit) const;

  bool empty() const { return groups_.empty(); }
  int64_t sentences() const { return static_cast<int64_t>(groups_.size()); }
  int64_t rows() const { return state_.batch_size(); }
  // Source positions per row in cross-attention, padding included.
  int64_t padded_source_length() const;
  // Source plus generated tokens over all rows, padding excluded.
  int64_t context_tokens() const;
  // Largest number of tokens any sentence in the batch may still be fed.
  int64_t max_target_length() const { return state_.capacity_limit; }
  int64_t cache_bytes() const { return state_.cache_bytes(); }

  // Upper bound on the key/value cache bytes of a batch of `rows` rows with
  // sources padded to `source_length` and at most `target_length` tokens
  // fed per row.
  static int64_t CacheBytesBound(const ModelConfig& config, int64_t element_size, int64_t rows,
                                 int64_t source_length, int64_t target_length);

 private:
  // The live beams and finished hypotheses of one sentence (greedy: one beam).
  struct Group {
    int64_t id = 0;
    SearchOptions options;
    int64_t beam = 1;
    int64_t step = 0;                         // tokens fed so far
    std::vector<std::vector<int64_t>> beams;  // tokens of each live beam
    std::vector<float> scores;                // cumulative log-prob of each beam
    std::vector<SearchHypothesis> finished;
  };
  // What one step decided for a group: carried-on rows and their tokens.
  struct Choice {
    bool done = false;
    std::vector<int64_t> origins;  // row within the group each new beam extends
    std::vector<int64_t> tokens;   // token each new beam was fed
  };

  Choice ChooseGreedy(Group& group, int64_t token, float log_prob) const;
  Choice ChooseBeams(Group& group, const float* scores, const int64_t* indices, int64_t candidates,
                     int64_t vocab) const;
  void SelectGreedy(const torch::Tensor& log_probs, const std::vector<int64_t>& group_indices,
                    const std::vector<int64_t>& first_rows, std::vector<Choice>* choices);
  void SelectBeams(const torch::Tensor& log_probs, int64_t beam,
                   const std::vector<int64_t>& group_indices,
                   const std::vector<int64_t>& first_rows, std::vector<Choice>* choices);
  void UpdateCapacityLimit();

  Transformer& model_;
  torch::Device device_;
  DecoderState state_;
  std::vector<Group> groups_;         // in row order
  std::vector<int64_t> next_tokens_;  // token each row is fed at the next step
};

}  // namespace quantmt
