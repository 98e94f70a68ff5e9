// The CUDA graph decoder in a build whose LibTorch has no CUDA.
#include "decoding/cuda_batch_decoder.h"

namespace quantmt {
namespace {

absl::Status NotInThisBuild() {
  return absl::UnimplementedError(
      "CUDA graph decoding is not in this build: its LibTorch has no CUDA (build against a CUDA "
      "LibTorch to get it)");
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchDecoder>> CreateCudaBatchDecoder(
    Transformer& /*model*/, const CudaBatchDecoderOptions& /*options*/) {
  return NotInThisBuild();
}

}  // namespace quantmt
