// Scaled dot-product attention for inference on the CPU, on plain arrays
// (torch-free).
//
// LibTorch 1.13 runs a decoding step's attention (one query against a few
// dozen keys, per sentence and head) as broadcast multiply-and-sum passes or
// as one tiny GEMM per (sentence, head); at batch 64 that costs more than the
// projections around it. Here each (sentence, head) pair is one task:
// scores, softmax and the weighted sum of values in one pass over its keys
// and values, written straight into the [batch, query, heads * head_dim]
// layout the output projection reads.
#pragma once

#include <cstdint>

namespace quantmt::kernels {

// A [batch, heads, time, head_dim] tensor whose last dimension is contiguous;
// the other strides are free (views of a larger cache, transposed heads).
struct HeadsView {
  const float* data = nullptr;
  int64_t batch_stride = 0;
  int64_t head_stride = 0;
  int64_t time_stride = 0;
};

// An additive mask broadcast to [batch, queries, keys] (0 or -inf; a stride
// of 0 repeats a dimension). data == nullptr: no mask.
struct MaskView {
  const float* data = nullptr;
  int64_t batch_stride = 0;
  int64_t query_stride = 0;
  int64_t key_stride = 0;
};

struct AttentionShape {
  int64_t batch = 0;
  int64_t heads = 0;
  int64_t queries = 0;
  int64_t keys = 0;
  int64_t head_dim = 0;
};

// out[b, i, h * head_dim + d] = sum_t softmax_t(scale * q[b,h,i] . k[b,h,t]
// + mask[b,i,t]) * v[b,h,t,d]. Keys and values of masked slots (-inf) are
// never read. A query whose every key is masked gets zeros (LibTorch's
// softmax would give NaN). `threads` splits the (b, h) pairs.
void AttentionForward(const HeadsView& q, const HeadsView& k, const HeadsView& v,
                      const MaskView& mask, const AttentionShape& shape, float scale, float* out,
                      int threads);

}  // namespace quantmt::kernels
