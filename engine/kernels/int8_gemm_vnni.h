// A hand-written AVX-512 VNNI int8 GEMM with the int8 layer's whole forward
// pass in one parallel region: quantize the input rows, multiply, and apply
// row scale x channel scale + bias while the sums are still in registers.
//
// C[m, n] = sum_k A[m, k] * W[n, k], A and W int8 (symmetric, -127..127):
// exact int32 sums, like DnnlMatmul's int8 kind. VNNI multiplies unsigned by
// signed bytes, so A is stored as A + 128 and 128 * sum_k W[n, k] is taken
// off again (the per-column sums are computed when packing).
//
// Why not oneDNN alone: oneDNN 2.6 cannot apply per-row scales in its
// epilogue (that post-op falls back to its reference kernel), so around its
// GEMM the layer needed a quantization pass, an int32 round trip through
// memory and a dequantization pass, each its own parallel region; the layer
// ran at half the GEMM's speed (docs/benchmarks.md).
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace quantmt::kernels {

// Whether this CPU has AVX-512 VNNI (and the build can use it).
bool HaveAvx512Vnni();

// How a float input becomes int8 codes and the int32 sums become floats:
//   codes[r, :] = round(x[r, :] / s_r), s_r = input_scale if > 0 (static),
//                 else max |x[r, :]| / 127 (dynamic, per row);
//   out[r, c]   = sums[r, c] * (s_r * column_scales[c]) + bias[c].
struct Int8Scaling {
  float input_scale = 0.0f;              // > 0: static; 0: dynamic per row
  const float* column_scales = nullptr;  // [n], required
  const float* bias = nullptr;           // [n] or null
};

class Int8GemmVnni {
 public:
  // weight: [n, k] row-major int8. Requires HaveAvx512Vnni().
  Int8GemmVnni(const int8_t* weight, int64_t n, int64_t k);

  // x: [m, k] float; out: [m, n] float. Splits the columns over `threads`
  // OpenMP threads when the product is large enough to pay for waking them.
  void Forward(const float* x, int64_t m, const Int8Scaling& scaling, float* out,
               int threads) const;

  // The bare product of int8 codes: a [m, k], c [m, n] int32.
  void Multiply(const int8_t* a, int64_t m, int32_t* c, int threads) const;

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }

 private:
  struct Output;
  const int8_t* Packed() const;
  // Rows [0, m) of shifted codes (k_padded_ bytes apart) times the weights,
  // after prepare_rows(first, last) has written rows [first, last) of them
  // (inside the parallel region when that pays).
  void Run(const uint8_t* codes, int64_t m, const Output& output, int threads,
           const std::function<void(int64_t, int64_t)>& prepare_rows) const;

  int64_t n_, k_, k_padded_, n_blocks_;
  // [n_blocks][k_padded / 4][16 columns][4 bytes]: one 64-byte vector per
  // group of four k for sixteen columns.
  std::vector<int8_t> packed_;         // aligned to 64 bytes by Packed()
  std::vector<int32_t> compensation_;  // 128 * sum_k W[n, k], padded to 16
};

}  // namespace quantmt::kernels
