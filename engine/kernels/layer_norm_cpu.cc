#include "kernels/layer_norm_cpu.h"

#include <cmath>

#include "kernels/vector_clones.h"

namespace quantmt::kernels {
namespace {

// Two passes over a row that stays in L1 (the mean, then the centred sum of
// squares): as stable as LibTorch's, unlike sum(x^2) - mean^2.
QUANTMT_VECTOR_CLONES
void NormalizeRow(const float* x, const float* residual, const float* gamma, const float* beta,
                  int64_t cols, float eps, float* out) {
  float sum = 0.0f;
  if (residual != nullptr) {
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < cols; ++c) {
      out[c] = x[c] + residual[c];
      sum += out[c];
    }
  } else {
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < cols; ++c) {
      out[c] = x[c];
      sum += out[c];
    }
  }
  const float mean = sum / static_cast<float>(cols);
  float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
  for (int64_t c = 0; c < cols; ++c) {
    const float centred = out[c] - mean;
    squares += centred * centred;
  }
  const float inverse_deviation = 1.0f / std::sqrt(squares / static_cast<float>(cols) + eps);
  if (gamma != nullptr && beta != nullptr) {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) {
      out[c] = (out[c] - mean) * inverse_deviation * gamma[c] + beta[c];
    }
  } else {
#pragma omp simd
    for (int64_t c = 0; c < cols; ++c) {
      out[c] =
          (out[c] - mean) * inverse_deviation * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
    }
  }
}

// Rows split across threads only when a parallel region pays (a decoding
// step at small batches has a few rows of 512).
constexpr int64_t kParallelElements = 1 << 16;

}  // namespace

void AddLayerNorm(const float* x, const float* residual, const float* gamma, const float* beta,
                  int64_t rows, int64_t cols, float eps, float* out, int threads) {
  const bool parallel = threads > 1 && rows > 1 && rows * cols >= kParallelElements;
#pragma omp parallel for num_threads(threads) if (parallel) schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    NormalizeRow(x + r * cols, residual ? residual + r * cols : nullptr, gamma, beta, cols, eps,
                 out + r * cols);
  }
}

}  // namespace quantmt::kernels
