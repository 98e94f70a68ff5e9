// The CUDA graph decoder in a build whose LibTorch has no CUDA.
#include "decoding/cuda_graph_decoder.h"

namespace quantmt {

absl::StatusOr<std::unique_ptr<CudaGraphDecoder>> CudaGraphDecoder::Create(
    Transformer& /*model*/, const CudaGraphDecoderOptions& /*options*/) {
  return absl::UnimplementedError(
      "CUDA graph decoding is not in this build: its LibTorch has no CUDA (build against a CUDA "
      "LibTorch to get it)");
}

}  // namespace quantmt
