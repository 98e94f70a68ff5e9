#include "model/linear.h"

#include <ATen/record_function.h>

#include <cmath>
#include <stdexcept>

#include "kernels/dnnl_matmul.h"
#include "model/int8_linear.h"
#include "model/packed_product.h"
#include "model/pq_linear.h"

namespace quantmt {

FloatLinear::FloatLinear(int64_t in_features, int64_t out_features, bool with_bias) {
  // Xavier-uniform, as in the Transformer paper's reference implementations;
  // training starts from this, inference overwrites it from the checkpoint.
  const double bound = std::sqrt(6.0 / static_cast<double>(in_features + out_features));
  weight_ = register_parameter("weight",
                               torch::empty({out_features, in_features}).uniform_(-bound, bound));
  if (with_bias) bias_ = register_parameter("bias", torch::zeros({out_features}));
}

void PrepareForInference(torch::nn::Module& model) {
  for (const auto& module : model.modules(/*include_self=*/true)) {
    if (auto* linear = dynamic_cast<Linear*>(module.get())) linear->PrepareForInference();
  }
}

torch::Tensor Linear::EmbedRows(const torch::Tensor& /*ids*/) {
  throw std::logic_error("this linear layer cannot serve as an embedding table");
}

FloatLinear::~FloatLinear() = default;

void FloatLinear::PrepareForInference() { matmul_ = PackFloatWeight(weight_, bias_); }

torch::Tensor FloatLinear::Forward(const torch::Tensor& input) {
  if (matmul_ && PackedProductServes(input) && weight_.is_cpu()) {
    // Named for the op profiler (quantmt-bench-decode --profile).
    RECORD_FUNCTION("quantmt::float_linear", std::vector<c10::IValue>());
    return PackedProduct(*matmul_, input);
  }
  return DenseForward(input, weight_, bias_);
}

torch::Tensor FloatLinear::EmbedRows(const torch::Tensor& ids) {
  return torch::embedding(weight_, ids);
}

torch::Tensor DenseForward(const torch::Tensor& input, const torch::Tensor& weight,
                           const torch::Tensor& bias) {
  if (input.is_cpu() && input.numel() == input.size(-1) && !torch::GradMode::is_enabled()) {
    auto output = bias.defined() ? torch::addmv(bias, weight, input.reshape({-1}))
                                 : torch::mv(weight, input.reshape({-1}));
    auto sizes = input.sizes().vec();
    sizes.back() = weight.size(0);
    return output.view(sizes);
  }
  return torch::nn::functional::linear(input, weight, bias);
}

absl::StatusOr<LinearFactory> LinearFactoryFor(const QuantizationConfig& quantization) {
  if (quantization.scheme == "none") {
    return LinearFactory([](const LinearSpec& spec) {
      return std::static_pointer_cast<Linear>(
          std::make_shared<FloatLinear>(spec.in_features, spec.out_features, spec.bias));
    });
  }
  if (quantization.scheme == "int8_dynamic" || quantization.scheme == "int8_static") {
    ASSIGN_OR_RETURN(Int8Params params, ParseInt8Params(quantization));
    return Int8LinearFactory(params);
  }
  if (quantization.scheme == "daq") return DaqLinearFactory(quantization);
  return absl::InvalidArgumentError("quantization scheme '" + quantization.scheme +
                                    "' has no linear layer in this build");
}

}  // namespace quantmt
