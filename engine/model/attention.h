// Multi-head attention with the projections as Linear layers.
//
// Keys and values are projected once and kept by the caller: decoder
// self-attention appends one position per step to a cache (KeyValueCache),
// cross-attention projects the encoder output once per sentence.
#pragma once

#include <torch/torch.h>

#include "model/linear.h"

namespace quantmt {

// Keys and values of one attention layer, [batch, heads, time, head_dim].
// For decoder self-attention the tensors are preallocated (zero-filled) with
// room for more steps than the `length` slots in use.
struct KeyValueCache {
  torch::Tensor keys;
  torch::Tensor values;
  int64_t length = 0;

  // Keeps the batch rows in `index` (finished sentences leave, beams
  // reorder) and the first `keep_length` time slots (-1: all).
  void Select(const torch::Tensor& index, int64_t keep_length = -1);
  // Appends the rows of `other`, padding both to the longer time axis with
  // zeros (the caller masks padded slots).
  void Append(const KeyValueCache& other);
  int64_t bytes() const;
};

// Where the rows of one decoding step write their key and value, and which
// cached slots they may attend to. Rows of a continuous batch joined at
// different steps, so each may be at its own position.
struct StepPositions {
  // >= 0: every row writes this slot (no mask needed). -1: rows differ, see
  // `positions`.
  int64_t uniform = -1;
  torch::Tensor positions;  // int64 [B] on the device: slot each row writes (when not uniform)
  int64_t length = 0;       // slots attended: largest position + 1
  // Additive [B, 1, 1, length]: -inf for slots a row has not filled;
  // undefined when uniform.
  torch::Tensor mask;
  // Cache growth stops here: no row writes beyond it (0: unbounded).
  int64_t capacity_limit = 0;
};

// Self-attention projects q, k and v from one input; cross-attention
// projects k and v from the encoder output. Serving stacks those that share
// an input into one layer.
enum class AttentionKind { kSelf, kCross };

class MultiHeadAttention : public torch::nn::Module, public InferencePreparable {
 public:
  MultiHeadAttention(int64_t d_model, int64_t attention_dim, int64_t heads,
                     const LinearFactory& make_linear, AttentionKind kind = AttentionKind::kSelf);

  // Stacks q/k/v (self) or k/v (cross) into one layer where the precision
  // can (see StackProjections), and releases the parts' own packed weights.
  void PrepareForInference() override;
  // Whether PrepareForInference stacked the projections.
  bool stacked() const { return stacked_ != nullptr; }

  // Full attention. query [B, Tq, d_model], memory [B, Tk, d_model];
  // mask: additive, broadcastable to [B, heads, Tq, Tk] (0 or -inf), or undefined.
  torch::Tensor Forward(const torch::Tensor& query, const torch::Tensor& memory,
                        const torch::Tensor& mask, double dropout);

  // Projects memory [B, Tk, d_model] to keys and values [B, heads, Tk, head_dim].
  KeyValueCache ProjectKeyValue(const torch::Tensor& memory);

  // One decoding step of self-attention: projects x [B, 1, d_model], writes
  // its key/value into `cache` at each row's position (growing it when
  // full) and attends over the slots each row has filled.
  torch::Tensor ForwardIncremental(const torch::Tensor& x, KeyValueCache* cache,
                                   const StepPositions& step);

  // Attention of query [B, Tq, d_model] over precomputed keys/values.
  torch::Tensor ForwardCached(const torch::Tensor& query, const KeyValueCache& memory,
                              const torch::Tensor& mask);

 private:
  torch::Tensor SplitHeads(const torch::Tensor& x) const;  // [B,T,A] -> [B,H,T,D]
  // The stacked layer when it serves (inference, no autograd), else null.
  Linear* StackedFor(const torch::Tensor& input) const;
  // Projections of one input, through the stacked layer when it serves:
  // {q, k, v} (self-attention) or {k, v} (cross), each [B, H, T, D].
  std::vector<torch::Tensor> Project(const torch::Tensor& input);
  torch::Tensor Attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& mask, double dropout);

  int64_t heads_;
  int64_t head_dim_;
  AttentionKind kind_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, out_proj_;
  // Serving only, not a registered module (not in checkpoints).
  std::shared_ptr<Linear> stacked_;
};

}  // namespace quantmt
