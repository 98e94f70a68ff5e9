#include "kernels/int8_rows.h"

#include <algorithm>
#include <cmath>

#include "kernels/vector_clones.h"

// Vector clones: these loops are O(rows * cols) beside the GEMM's
// O(rows * cols * n), but at batch-1 decoding they are not free.

namespace quantmt::kernels {
namespace {

QUANTMT_VECTOR_CLONES
void QuantizeRow(const float* x, int64_t count, float inverse_scale, int8_t* codes) {
  for (int64_t i = 0; i < count; ++i) {
    const float q = std::nearbyint(x[i] * inverse_scale);
    codes[i] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, q)));
  }
}

QUANTMT_VECTOR_CLONES
float MaxAbs(const float* x, int64_t count) {
  // Without the simd reduction GCC keeps this scalar (std::max's NaN order),
  // one dependent max per element.
  float result = 0.0f;
#pragma omp simd reduction(max : result)
  for (int64_t i = 0; i < count; ++i) result = std::max(result, std::fabs(x[i]));
  return result;
}

QUANTMT_VECTOR_CLONES
void DequantizeRow(const int32_t* accumulators, int64_t cols, float row_scale,
                   const float* column_scales, const float* bias, float* out) {
  if (bias != nullptr) {
    for (int64_t c = 0; c < cols; ++c) {
      out[c] = static_cast<float>(accumulators[c]) * (row_scale * column_scales[c]) + bias[c];
    }
  } else {
    for (int64_t c = 0; c < cols; ++c) {
      out[c] = static_cast<float>(accumulators[c]) * (row_scale * column_scales[c]);
    }
  }
}

// Rows split across threads only when there is enough work to pay for a
// parallel region (a batch-1 decoding step has one row).
constexpr int64_t kParallelElements = 1 << 18;

}  // namespace

void QuantizeRowsSymmetric(const float* x, int64_t rows, int64_t cols, int8_t* codes, float* scales,
                           int threads) {
  const bool parallel = threads > 1 && rows > 1 && rows * cols >= kParallelElements;
#pragma omp parallel for num_threads(threads) if (parallel) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const float max_abs = MaxAbs(x + r * cols, cols);
    scales[r] = max_abs / 127.0f;
    QuantizeRow(x + r * cols, cols, max_abs > 0.0f ? 1.0f / scales[r] : 0.0f, codes + r * cols);
  }
}

void QuantizeWithScale(const float* x, int64_t count, float scale, int8_t* codes) {
  QuantizeRow(x, count, 1.0f / scale, codes);
}

void DequantizeAccumulators(const int32_t* accumulators, int64_t rows, int64_t cols,
                            const float* row_scales, float row_scale, const float* column_scales,
                            const float* bias, float* out, int threads) {
  const bool parallel = threads > 1 && rows > 1 && rows * cols >= kParallelElements;
#pragma omp parallel for num_threads(threads) if (parallel) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    DequantizeRow(accumulators + r * cols, cols, row_scales ? row_scales[r] : row_scale,
                  column_scales, bias, out + r * cols);
  }
}

}  // namespace quantmt::kernels
