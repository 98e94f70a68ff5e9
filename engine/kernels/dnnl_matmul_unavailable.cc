// DnnlMatmul in a build without oneDNN: callers fall back to LibTorch.
#include "kernels/dnnl_matmul.h"

namespace quantmt::kernels {

bool HaveDnnl() { return false; }

absl::StatusOr<std::unique_ptr<DnnlMatmul>> DnnlMatmul::Create(Kind, const void*, const float*,
                                                               int64_t, int64_t) {
  return absl::UnimplementedError("this build has no oneDNN (QUANTMT_WITH_DNNL is off)");
}

}  // namespace quantmt::kernels
