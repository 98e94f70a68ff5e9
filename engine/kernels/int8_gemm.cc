#include "kernels/int8_gemm.h"

#include <vector>

#include "kernels/int8_rows.h"
#include "kernels/scratch.h"

namespace quantmt::kernels {
namespace {

int64_t vnni_max_rows = Int8Gemm::kDefaultVnniMaxRows;

}  // namespace

void Int8Gemm::SetVnniMaxRows(int64_t rows) { vnni_max_rows = rows; }

absl::StatusOr<std::unique_ptr<Int8Gemm>> Int8Gemm::Create(const int8_t* weight, int64_t n,
                                                           int64_t k) {
  if (n <= 0 || k <= 0) {
    return absl::InvalidArgumentError("int8 GEMM weights must be non-empty");
  }
  auto gemm = std::unique_ptr<Int8Gemm>(new Int8Gemm());
  if (HaveDnnl()) {
    ASSIGN_OR_RETURN(gemm->dnnl_,
                     DnnlMatmul::Create(DnnlMatmul::Kind::kInt8, weight, nullptr, n, k));
  }
  if (HaveAvx512Vnni()) gemm->vnni_ = std::make_unique<Int8GemmVnni>(weight, n, k);
  if (!gemm->dnnl_ && !gemm->vnni_) {
    return absl::UnimplementedError("no int8 GEMM kernel: neither oneDNN nor AVX-512 VNNI");
  }
  return gemm;
}

bool Int8Gemm::UseVnni(int64_t m) const { return vnni_ && (m <= vnni_max_rows || !dnnl_); }

void Int8Gemm::Forward(const float* x, int64_t m, const Int8Scaling& scaling, float* out,
                       int threads) {
  if (UseVnni(m)) {
    vnni_->Forward(x, m, scaling, out, threads);
    return;
  }
  // Scratch reused across calls: at batch-1 decoding a layer runs in tens of
  // microseconds, and allocations per call would show.
  const int64_t k = dnnl_->k(), n = dnnl_->n();
  thread_local std::vector<int8_t> codes;
  thread_local std::vector<float> row_scales;
  thread_local std::vector<int32_t> sums;
  int8_t* code_data = Scratch(codes, m * k);
  int32_t* sum_data = Scratch(sums, m * n);
  float* row_scale_data = Scratch(row_scales, m);
  const bool dynamic = !(scaling.input_scale > 0.0f);
  if (dynamic) {
    QuantizeRowsSymmetric(x, m, k, code_data, row_scale_data, threads);
  } else {
    QuantizeWithScale(x, m * k, scaling.input_scale, code_data);
  }
  dnnl_->Run(code_data, m, sum_data, threads);
  DequantizeAccumulators(sum_data, m, n, dynamic ? row_scale_data : nullptr, scaling.input_scale,
                         scaling.column_scales, scaling.bias, out, threads);
}

void Int8Gemm::Multiply(const int8_t* a, int64_t m, int32_t* c, int threads) {
  if (UseVnni(m)) {
    vnni_->Multiply(a, m, c, threads);
  } else {
    dnnl_->Run(a, m, c, threads);
  }
}

}  // namespace quantmt::kernels
