// The int8 GEMM that Int8Linear runs: out = (x quantized to int8) x W^T,
// integer sums scaled back to floats (Int8Scaling). Holds the weights packed
// for each kernel this build and CPU have, and picks one per call by the row
// count:
//   - the hand-written AVX-512 VNNI kernel (Int8GemmVnni): quantization,
//     product and scaling in one pass;
//   - oneDNN's matmul (DnnlMatmul) between a quantization pass and a
//     scaling pass: CPUs without AVX-512 VNNI.
// bench/gemm_kernels.cc measures both; the default comes from it.
#pragma once

#include <cstdint>
#include <memory>

#include "kernels/dnnl_matmul.h"
#include "kernels/int8_gemm_vnni.h"

namespace quantmt::kernels {

class Int8Gemm {
 public:
  // weight: [n, k] row-major int8. Unimplemented where no int8 kernel runs
  // (no oneDNN and no AVX-512 VNNI): callers then fall back to LibTorch.
  static absl::StatusOr<std::unique_ptr<Int8Gemm>> Create(const int8_t* weight, int64_t n,
                                                          int64_t k);

  // x: [m, k] float; out: [m, n] float. Thread-safe.
  void Forward(const float* x, int64_t m, const Int8Scaling& scaling, float* out, int threads);

  // The bare product of int8 codes: a [m, k], c [m, n] int32. Thread-safe.
  void Multiply(const int8_t* a, int64_t m, int32_t* c, int threads);

  // Row counts up to this go to the VNNI kernel (when the CPU has it), more
  // to oneDNN (when the build has it). For tests and benchmarks; not
  // thread-safe.
  static void SetVnniMaxRows(int64_t rows);
  static constexpr int64_t kDefaultVnniMaxRows = INT64_MAX;

 private:
  bool UseVnni(int64_t m) const;

  std::unique_ptr<DnnlMatmul> dnnl_;
  std::unique_ptr<Int8GemmVnni> vnni_;
};

}  // namespace quantmt::kernels
