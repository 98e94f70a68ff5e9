// Float tensors -> symmetric int8 with one scale per row (per output channel
// of a linear layer, per token of an embedding table), and back.
//
// The one implementation that quantmt-quantize, the benchmarks and the QAT
// export share: w ~= codes[r, c] * scales[r], |codes| <= 127,
// scales[r] = max |w[r, :]| / 127 (1 for an all-zero row, so every scale is
// positive as the checkpoint format requires).
#pragma once

#include <torch/torch.h>

namespace quantmt {

struct QuantizedRows {
  torch::Tensor codes;   // int8 [rows, cols]
  torch::Tensor scales;  // float32 [rows]
};

// weight: floating point [rows, cols] on any device; the result is on the CPU.
QuantizedRows QuantizeRows(const torch::Tensor& weight);

// codes * scales[:, None] as float32 on the codes' device.
torch::Tensor DequantizeRows(const torch::Tensor& codes, const torch::Tensor& scales);

// Activations as the int8 kernels see them, in floating point ("fake
// quantization"): dynamic per row of the last dimension (scale = max|x|/127)
// when input_scale is undefined, else per tensor with the given scalar scale.
torch::Tensor FakeQuantizeActivations(const torch::Tensor& x, const torch::Tensor& input_scale);

}  // namespace quantmt
