// The float <-> int8 steps around an int8 GEMM, on plain arrays (torch-free).
//
// Symmetric quantization: q = clamp(round(x * (1 / scale)), -127, 127), with
// round-half-to-even as torch.round and PyTorch's fake quantization do, so
// that a model trained with fake quantization sees the same numbers here.
#pragma once

#include <cstdint>

namespace quantmt::kernels {

// Dynamic, per row: scales[r] = max |x[r, :]| / 127 (0 for an all-zero row,
// whose codes are then all 0). x: [rows, cols] row-major.
// `threads` > 1 splits large inputs by rows.
void QuantizeRowsSymmetric(const float* x, int64_t rows, int64_t cols, int8_t* codes, float* scales,
                           int threads = 1);

// Static, one scale for the whole tensor (scale > 0).
void QuantizeWithScale(const float* x, int64_t count, float scale, int8_t* codes);

// out[r, c] = accumulators[r, c] * row_scales[r] * column_scales[c] + bias[c].
// row_scales null means every row has `row_scale`; bias may be null.
void DequantizeAccumulators(const int32_t* accumulators, int64_t rows, int64_t cols,
                            const float* row_scales, float row_scale, const float* column_scales,
                            const float* bias, float* out, int threads = 1);

}  // namespace quantmt::kernels
