// The int8 GEMM that Int8Linear runs: C[m, n] = sum_k A[m, k] * W[n, k], int8
// operands, exact int32 sums. Holds the weights packed for each kernel this
// build and CPU have, and picks one per call by the row count:
//   - the hand-written AVX-512 VNNI kernel (Int8GemvVnni) for few rows,
//     where oneDNN's fixed cost per call dominates;
//   - oneDNN's matmul (DnnlMatmul) otherwise.
// bench/gemm_kernels.cc measures both; the crossover is set from it.
#pragma once

#include <cstdint>
#include <memory>

#include "kernels/dnnl_matmul.h"
#include "kernels/int8_gemv_vnni.h"

namespace quantmt::kernels {

class Int8Gemm {
 public:
  // weight: [n, k] row-major int8. Unimplemented where no int8 kernel runs
  // (no oneDNN and no AVX-512 VNNI): callers then fall back to LibTorch.
  static absl::StatusOr<std::unique_ptr<Int8Gemm>> Create(const int8_t* weight, int64_t n,
                                                          int64_t k);

  // a: [m, k]; c: [m, n] int32. Thread-safe.
  void Run(const int8_t* a, int64_t m, int32_t* c, int threads);

  // Row counts up to this go to the VNNI kernel (when the CPU has it).
  // Default: kDefaultVnniMaxRows. For benchmarks; not thread-safe.
  static void SetVnniMaxRows(int64_t rows);
  static constexpr int64_t kDefaultVnniMaxRows = 0;

 private:
  std::unique_ptr<DnnlMatmul> dnnl_;
  std::unique_ptr<Int8GemvVnni> vnni_;
};

}  // namespace quantmt::kernels
