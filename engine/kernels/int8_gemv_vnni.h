// A hand-written AVX-512 VNNI int8 GEMM for few rows (decoding steps, M of
// 1 to 8), where oneDNN's per-call overhead is a large part of the time.
//
// C[m, n] = sum_k A[m, k] * W[n, k], A and W int8 (symmetric, -127..127), C
// int32: exact, like DnnlMatmul's int8 kind. VNNI multiplies unsigned by
// signed bytes, so A is shifted to A + 128 and 128 * sum_k W[n, k] is taken
// off again (the per-column sums are computed when packing).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace quantmt::kernels {

// Whether this CPU has AVX-512 VNNI (and the build can use it).
bool HaveAvx512Vnni();

class Int8GemvVnni {
 public:
  // weight: [n, k] row-major int8. Requires HaveAvx512Vnni().
  Int8GemvVnni(const int8_t* weight, int64_t n, int64_t k);

  // a: [m, k] row-major int8; c: [m, n] row-major int32. Splits the columns
  // over `threads` OpenMP threads.
  void Run(const int8_t* a, int64_t m, int32_t* c, int threads) const;

  int64_t n() const { return n_; }
  int64_t k() const { return k_; }

 private:
  int8_t* Packed();
  const int8_t* Packed() const;

  int64_t n_, k_, k_padded_, n_blocks_;
  // [n_blocks][k_padded / 4][16 columns][4 bytes]: one 64-byte vector per
  // group of four k for sixteen columns.
  std::vector<int8_t> packed_;         // aligned to 64 bytes by Packed()
  std::vector<int32_t> compensation_;  // 128 * sum_k W[n, k], padded to 16
};

}  // namespace quantmt::kernels
