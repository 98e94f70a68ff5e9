#include "model/int8_linear.h"

#include <ATen/record_function.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "kernels/int8_gemm.h"
#include "model/int8_quantize.h"

namespace quantmt {
absl::StatusOr<Int8Params> ParseInt8Params(const QuantizationConfig& quantization) {
  Int8Params params;
  if (quantization.scheme == "int8_dynamic") {
    params.mode = Int8Mode::kDynamic;
  } else if (quantization.scheme == "int8_static") {
    params.mode = Int8Mode::kStatic;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("quantization.scheme '", quantization.scheme, "' is not an int8 scheme"));
  }
  const auto json = nlohmann::json::parse(quantization.params_json, nullptr, false);
  if (!json.is_object()) return absl::InvalidArgumentError("quantization: expected an object");
  for (auto [key, target] :
       {std::pair{"quantize_embeddings", &params.quantize_embeddings},
        std::pair{"quantize_output_projection", &params.quantize_output_projection}}) {
    auto found = json.find(key);
    if (found == json.end()) continue;
    if (!found->is_boolean()) {
      return absl::InvalidArgumentError(
          absl::StrCat("quantization.", key, ": expected true or false, got ", found->dump()));
    }
    *target = found->get<bool>();
  }
  return params;
}

LinearFactory Int8LinearFactory(const Int8Params& params) {
  return [params](const LinearSpec& spec) -> std::shared_ptr<Linear> {
    const bool quantize = spec.role == LinearRole::kEmbedding ? params.quantize_embeddings
                          : spec.role == LinearRole::kOutputProjection
                              ? params.quantize_output_projection
                              : true;
    if (!quantize) {
      return std::make_shared<FloatLinear>(spec.in_features, spec.out_features, spec.bias);
    }
    return std::make_shared<Int8Linear>(spec.in_features, spec.out_features, spec.bias,
                                        params.mode);
  };
}

Int8Linear::Int8Linear(int64_t in_features, int64_t out_features, bool with_bias, Int8Mode mode)
    : mode_(mode) {
  // Registered as parameters without gradients so that they count as the
  // model's parameters; the loader fills them from the checkpoint.
  weight_ = register_parameter("weight", torch::zeros({out_features, in_features}, torch::kInt8),
                               /*requires_grad=*/false);
  weight_scale_ = register_buffer("weight_scale", torch::ones({out_features}));
  if (with_bias) bias_ = register_parameter("bias", torch::zeros({out_features}), false);
  if (mode == Int8Mode::kStatic) input_scale_ = register_buffer("input_scale", torch::ones({}));
}

Int8Linear::~Int8Linear() = default;

void Int8Linear::SetFromFloat(const torch::Tensor& weight, const torch::Tensor& bias) {
  torch::NoGradGuard no_grad;
  QuantizedRows quantized = QuantizeRows(weight);
  weight_.copy_(quantized.codes);
  weight_scale_.copy_(quantized.scales);
  if (bias_.defined()) bias_.copy_(bias);
  Unprepare();
}

void Int8Linear::SetInputScale(float scale) {
  torch::NoGradGuard no_grad;
  if (input_scale_.defined()) input_scale_.fill_(scale);
  Unprepare();
}

std::shared_ptr<Int8Linear> Int8Linear::Stack(const std::vector<const Int8Linear*>& parts) {
  if (parts.empty()) return nullptr;
  const Int8Linear& first = *parts.front();
  std::vector<torch::Tensor> codes, scales, biases;
  for (const Int8Linear* part : parts) {
    if (part->mode_ != first.mode_ || part->in_features() != first.in_features() ||
        part->weight_.device() != first.weight_.device() ||
        part->compute_dtype_ != first.compute_dtype_ ||
        part->bias_.defined() != first.bias_.defined() ||
        (part->input_scale_.defined() && !torch::equal(part->input_scale_, first.input_scale_))) {
      return nullptr;
    }
    codes.push_back(part->weight_);
    scales.push_back(part->weight_scale_);
    if (part->bias_.defined()) biases.push_back(part->bias_);
  }
  torch::NoGradGuard no_grad;
  auto weight = torch::cat(codes);
  auto stacked =
      std::make_shared<Int8Linear>(weight.size(1), weight.size(0), !biases.empty(), first.mode_);
  stacked->compute_dtype_ = first.compute_dtype_;
  stacked->weight_.set_data(weight);
  stacked->weight_scale_.set_data(torch::cat(scales));
  if (!biases.empty()) stacked->bias_.set_data(torch::cat(biases));
  if (first.input_scale_.defined()) stacked->input_scale_.set_data(first.input_scale_.clone());
  stacked->PrepareForInference();
  return stacked;
}

torch::Tensor Int8Linear::DenseWeight() {
  torch::NoGradGuard no_grad;
  return DequantizeRows(weight_, weight_scale_);
}

void Int8Linear::Unprepare() {
  gemm_.reset();
  dequantized_weight_ = torch::Tensor();
}

void Int8Linear::PrepareForInference() {
  torch::NoGradGuard no_grad;
  Unprepare();
  if (input_scale_.defined()) input_scale_value_ = input_scale_.item<float>();
  if (weight_.is_cpu() && compute_dtype_ == torch::kFloat32) {
    auto codes = weight_.contiguous();
    auto gemm = kernels::Int8Gemm::Create(codes.data_ptr<int8_t>(), codes.size(0), codes.size(1));
    if (gemm.ok()) {
      gemm_ = std::move(*gemm);
      return;
    }
  }
  dequantized_weight_ = DequantizeRows(weight_, weight_scale_).to(compute_dtype_);
}

torch::Tensor Int8Linear::Forward(const torch::Tensor& input) {
  if (gemm_ && input.is_cpu() && input.scalar_type() == torch::kFloat32 &&
      !torch::GradMode::is_enabled()) {
    return ForwardCpuInt8(input);
  }
  if (dequantized_weight_.defined() && dequantized_weight_.device() == input.device()) {
    return ForwardDequantized(input, dequantized_weight_);
  }
  // Not prepared (or prepared for another device): correct, but dequantizes
  // on every call.
  return ForwardDequantized(input, DequantizeRows(weight_, weight_scale_).to(input.scalar_type()));
}

torch::Tensor Int8Linear::ForwardDequantized(const torch::Tensor& input,
                                             const torch::Tensor& weight) {
  auto x =
      FakeQuantizeActivations(input, mode_ == Int8Mode::kStatic ? input_scale_ : torch::Tensor());
  return DenseForward(x, weight, bias_.defined() ? bias_.to(x.scalar_type()) : bias_);
}

torch::Tensor Int8Linear::ForwardCpuInt8(const torch::Tensor& input) {
  RECORD_FUNCTION("quantmt::int8_linear", std::vector<c10::IValue>());
  const int64_t in = in_features(), out = out_features();
  TORCH_CHECK(input.size(-1) == in, "Int8Linear: input has ", input.size(-1),
              " features, expected ", in);
  auto x = input.reshape({-1, in}).contiguous();
  const int64_t rows = x.size(0);
  auto output = torch::empty({rows, out}, torch::kFloat32);
  kernels::Int8Scaling scaling;
  scaling.input_scale = mode_ == Int8Mode::kStatic ? input_scale_value_ : 0.0f;
  scaling.column_scales = weight_scale_.data_ptr<float>();
  scaling.bias = bias_.defined() ? bias_.data_ptr<float>() : nullptr;
  gemm_->Forward(x.data_ptr<float>(), rows, scaling, output.data_ptr<float>(),
                 at::get_num_threads());
  auto sizes = input.sizes().vec();
  sizes.back() = out;
  return output.view(sizes);
}

torch::Tensor Int8Linear::EmbedRows(const torch::Tensor& ids) {
  if (dequantized_weight_.defined() && dequantized_weight_.device() == ids.device()) {
    return torch::embedding(dequantized_weight_, ids);
  }
  auto flat = ids.reshape({-1});
  auto rows = weight_.index_select(0, flat).to(torch::kFloat32) *
              weight_scale_.index_select(0, flat).unsqueeze(1);
  auto sizes = ids.sizes().vec();
  sizes.push_back(in_features());
  return rows.to(compute_dtype_).view(sizes);
}

void Int8Linear::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  torch::NoGradGuard no_grad;
  compute_dtype_ = dtype;
  weight_.set_data(weight_.to(device, non_blocking));
  weight_scale_.set_data(weight_scale_.to(device, non_blocking));
  if (input_scale_.defined()) input_scale_.set_data(input_scale_.to(device, non_blocking));
  if (bias_.defined()) bias_.set_data(bias_.to(device, dtype, non_blocking));
  Unprepare();
}

void Int8Linear::to(torch::Dtype dtype, bool non_blocking) {
  to(weight_.device(), dtype, non_blocking);
}

void Int8Linear::to(torch::Device device, bool non_blocking) {
  to(device, compute_dtype_, non_blocking);
}

}  // namespace quantmt
