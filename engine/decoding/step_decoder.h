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

#include "decoding/batch_decoder.h"
#include "decoding/beam_groups.h"
#include "decoding/search.h"
#include "model/transformer.h"

namespace quantmt {

class StepDecoder : public BatchDecoder {
 public:
  StepDecoder(Transformer& model, const torch::Device& device);

  // BatchDecoder. Add encodes its inputs in one encoder pass: sorting them by
  // length first cuts padding.
  void Add(const std::vector<DecodeInput>& inputs) override;
  std::vector<DecodeOutput> Step() override;
  std::vector<int64_t> RemoveIf(const std::function<bool(int64_t id)>& drop) override;
  void ForEachBestPrefix(const std::function<void(int64_t id, const std::vector<int64_t>& tokens)>&
                             visit) const override;
  bool empty() const override { return groups_.empty(); }
  int64_t rows() const override { return state_.batch_size(); }
  int64_t padded_source_length() const override;
  int64_t context_tokens() const override;
  int64_t max_target_length() const override { return state_.capacity_limit; }
  int64_t cache_bytes() const override { return state_.cache_bytes(); }

  int64_t sentences() const { return static_cast<int64_t>(groups_.size()); }

  // Upper bound on the key/value cache bytes of a batch of `rows` rows with
  // sources padded to `source_length` and at most `target_length` tokens
  // fed per row.
  static int64_t CacheBytesBound(const ModelConfig& config, int64_t element_size, int64_t rows,
                                 int64_t source_length, int64_t target_length);

 private:
  using Group = BeamGroup;
  using Choice = BeamChoice;

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
