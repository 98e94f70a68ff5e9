// A compressed Transformer -> its float twin, in memory: how int8 and DAQ
// checkpoints serve on a GPU. There the CUDA graph decoders run float layers
// (engine/decoding/cuda_step_ops.h), and at this model size int8 products
// do not pay (docs/benchmarks.md, "Compressed checkpoints on the GPU"): a
// decoding step is bound by kernel latency, not by weight bandwidth, so the
// compression is kept for storage and transfer and dropped once in memory.
//
// The float twin computes with exactly the weights the checkpoint encodes
// (int8 codes x scales, DAQ codes looked up in their codebooks). What it
// drops is int8's activation rounding: activations stay in the compute
// dtype (weight-only quantization), so its outputs can differ from the CPU
// int8 kernels' where that rounding decides a token.
#pragma once

#include <memory>

#include "model/transformer.h"

namespace quantmt {

// Builds a Transformer with `model`'s architecture and quantization scheme
// "none": each linear layer gets the DenseWeight of `model`'s layer of the
// same name, every other floating-point tensor (biases, layer norms,
// positions) is copied. The result is float32 on the CPU, in eval mode, not
// yet prepared for inference. A float model is copied the same way.
absl::StatusOr<std::shared_ptr<Transformer>> DequantizeTransformer(Transformer& model);

}  // namespace quantmt
