#include "train/compress/fake_quant_linear.h"

#include <algorithm>

namespace quantmt::train {

torch::Tensor RowScales(const torch::Tensor& weight) {
  torch::NoGradGuard no_grad;
  return weight.detach().abs().amax(/*dim=*/1).to(torch::kFloat).clamp_min(kMinQuantRange) /
         kInt8Max;
}

// LibTorch's fake-quantization ops (the ones torch.ao.quantization uses)
// implement exactly the clipped straight-through estimator; they want float32
// input and int32 zero points (all zero: the scheme is symmetric).
torch::Tensor FakeQuantizePerTensor(const torch::Tensor& input, const torch::Tensor& scale) {
  const auto zero_point =
      torch::zeros({1}, torch::TensorOptions().dtype(torch::kInt).device(input.device()));
  return torch::fake_quantize_per_tensor_affine(input.to(torch::kFloat),
                                                scale.to(torch::kFloat).reshape({1}), zero_point,
                                                -kInt8Max, kInt8Max);
}

torch::Tensor FakeQuantizePerRow(const torch::Tensor& weight, const torch::Tensor& scales) {
  const auto zero_points = torch::zeros(
      {weight.size(0)}, torch::TensorOptions().dtype(torch::kInt).device(weight.device()));
  return torch::fake_quantize_per_channel_affine(weight.to(torch::kFloat), scales.to(torch::kFloat),
                                                 zero_points, /*axis=*/0, -kInt8Max, kInt8Max);
}

FakeQuantLinear::FakeQuantLinear(const LinearSpec& spec, double ema_momentum)
    : FloatLinear(spec.in_features, spec.out_features, spec.bias), ema_momentum_(ema_momentum) {
  // find() points into the dictionary: keep it alive while reading.
  const auto parameters = named_parameters(/*recurse=*/false);
  if (const torch::Tensor* bias = parameters.find("bias")) bias_ = *bias;
  input_range_ = register_buffer("input_range", torch::zeros({}));
  input_batches_ = register_buffer("input_batches", torch::zeros({}));
}

void FakeQuantLinear::Observe(const torch::Tensor& input) {
  // Device-side arithmetic only: no host synchronization per layer and step.
  torch::NoGradGuard no_grad;
  const auto current = input.detach().abs().amax().to(torch::kFloat);
  input_batches_.add_(1);
  const auto momentum = input_batches_.reciprocal().clamp_min(ema_momentum_);
  input_range_.add_(momentum * (current - input_range_));
}

torch::Tensor FakeQuantLinear::InputScale() const {
  return input_range_.clamp_min(kMinQuantRange) / kInt8Max;
}

torch::Tensor FakeQuantLinear::Forward(const torch::Tensor& input) {
  if (is_training()) Observe(input);
  const auto x = FakeQuantizePerTensor(input, InputScale());
  const auto w = FakeQuantizePerRow(weight(), RowScales(weight()));
  // Under autocast the linear runs in the autocast dtype, like any other.
  return torch::nn::functional::linear(x, w, bias_);
}

torch::Tensor FakeQuantLinear::EmbedRows(const torch::Tensor& ids) {
  // A row's quantization depends on that row alone: quantizing the rows
  // looked up equals looking up rows of the quantized table, for less work.
  const auto rows = torch::embedding(weight(), ids);
  const auto flat = rows.reshape({-1, rows.size(-1)});
  return FakeQuantizePerRow(flat, RowScales(flat)).view(rows.sizes());
}

LinearFactory FakeQuantLinearFactory(const FakeQuantOptions& options) {
  return [options](const LinearSpec& spec) -> std::shared_ptr<Linear> {
    const bool quantize =
        (spec.role != LinearRole::kEmbedding || options.quantize_embeddings) &&
        (spec.role != LinearRole::kOutputProjection || options.quantize_output_projection);
    if (quantize) return std::make_shared<FakeQuantLinear>(spec, options.ema_momentum);
    return std::make_shared<FloatLinear>(spec.in_features, spec.out_features, spec.bias);
  };
}

}  // namespace quantmt::train
