#include "model/int8_quantize.h"

namespace quantmt {

QuantizedRows QuantizeRows(const torch::Tensor& weight) {
  torch::NoGradGuard no_grad;
  auto w = weight.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  auto max_abs = w.abs().amax(1);
  auto scales = torch::where(max_abs > 0, max_abs / 127.0f, torch::ones_like(max_abs));
  // round-half-to-even of w * (1 / scale), as the activation path rounds.
  auto codes = torch::round(w * scales.reciprocal().unsqueeze(1)).clamp(-127, 127);
  return {codes.to(torch::kInt8), scales};
}

torch::Tensor DequantizeRows(const torch::Tensor& codes, const torch::Tensor& scales) {
  return codes.to(torch::kFloat32) * scales.to(codes.device(), torch::kFloat32).unsqueeze(1);
}

torch::Tensor FakeQuantizeActivations(const torch::Tensor& x, const torch::Tensor& input_scale) {
  torch::Tensor scale;
  if (input_scale.defined()) {
    scale = input_scale.to(x.device(), x.scalar_type());
  } else {
    scale = x.abs().amax(-1, /*keepdim=*/true) / 127.0f;
  }
  auto inverse = torch::where(scale > 0, scale.reciprocal(), torch::zeros_like(scale));
  return torch::round(x * inverse).clamp(-127, 127) * scale;
}

}  // namespace quantmt
