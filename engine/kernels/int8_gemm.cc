#include "kernels/int8_gemm.h"

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
  if (HaveAvx512Vnni()) gemm->vnni_ = std::make_unique<Int8GemvVnni>(weight, n, k);
  if (!gemm->dnnl_ && !gemm->vnni_) {
    return absl::UnimplementedError("no int8 GEMM kernel: neither oneDNN nor AVX-512 VNNI");
  }
  return gemm;
}

void Int8Gemm::Run(const int8_t* a, int64_t m, int32_t* c, int threads) {
  if (vnni_ && (m <= vnni_max_rows || !dnnl_)) {
    vnni_->Run(a, m, c, threads);
  } else {
    dnnl_->Run(a, m, c, threads);
  }
}

}  // namespace quantmt::kernels
