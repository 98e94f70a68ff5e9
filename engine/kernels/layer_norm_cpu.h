// Residual add and layer normalization in one pass over each row, for
// inference on the CPU (torch-free).
//
// A post-norm Transformer layer ends each sub-layer with norm(x + f(x)):
// LibTorch runs that as an add (a third buffer) and a layer norm (two more
// passes). Here each row is summed, normalized and written once; at batch-64
// decoding the two ops took about 7% of a step (op profile).
#pragma once

#include <cstdint>

namespace quantmt::kernels {

// out[r] = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta, where
// s = x[r] + residual[r] (residual may be null: s = x[r]). Rows are `cols`
// contiguous floats; gamma and beta may be null (1 and 0). Variance is the
// biased one, as LayerNorm's. out may alias x or residual. `threads` splits
// rows when there are enough of them.
void AddLayerNorm(const float* x, const float* residual, const float* gamma, const float* beta,
                  int64_t rows, int64_t cols, float eps, float* out, int threads);

}  // namespace quantmt::kernels
