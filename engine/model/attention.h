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
// For decoder self-attention the tensors are preallocated with room for
// `capacity` steps and `length` of them are filled.
struct KeyValueCache {
  torch::Tensor keys;
  torch::Tensor values;
  int64_t length = 0;

  // Keeps the batch rows in `index` (finished sentences leave, beams reorder).
  void Select(const torch::Tensor& index);
};

class MultiHeadAttention : public torch::nn::Module {
 public:
  MultiHeadAttention(int64_t d_model, int64_t attention_dim, int64_t heads,
                     const LinearFactory& make_linear);

  // Full attention. query [B, Tq, d_model], memory [B, Tk, d_model];
  // mask: additive, broadcastable to [B, heads, Tq, Tk] (0 or -inf), or undefined.
  torch::Tensor Forward(const torch::Tensor& query, const torch::Tensor& memory,
                        const torch::Tensor& mask, double dropout);

  // Projects memory [B, Tk, d_model] to keys and values [B, heads, Tk, head_dim].
  KeyValueCache ProjectKeyValue(const torch::Tensor& memory);

  // One decoding step of self-attention: projects x [B, 1, d_model], appends
  // its key/value to `cache` (growing it when full) and attends over all
  // cached positions.
  torch::Tensor ForwardIncremental(const torch::Tensor& x, KeyValueCache* cache);

  // Attention of query [B, Tq, d_model] over precomputed keys/values.
  torch::Tensor ForwardCached(const torch::Tensor& query, const KeyValueCache& memory,
                              const torch::Tensor& mask);

 private:
  torch::Tensor SplitHeads(const torch::Tensor& x) const;  // [B,T,A] -> [B,H,T,D]
  torch::Tensor Attend(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                       const torch::Tensor& mask, double dropout);

  int64_t heads_;
  int64_t head_dim_;
  std::shared_ptr<Linear> q_proj_, k_proj_, v_proj_, out_proj_;
};

}  // namespace quantmt
