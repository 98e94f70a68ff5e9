#include "model/linear.h"

#include <ATen/record_function.h>
#include <torch/version.h>

#include <cmath>
#include <stdexcept>

#include "kernels/dnnl_matmul.h"
#include "model/daq_linear.h"
#include "model/int8_linear.h"
#include "model/packed_product.h"

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
  // modules() lists parents before their children.
  auto modules = model.modules(/*include_self=*/true);
  for (auto module = modules.rbegin(); module != modules.rend(); ++module) {
    if (auto* preparable = dynamic_cast<InferencePreparable*>(module->get())) {
      preparable->PrepareForInference();
    }
  }
}

torch::Tensor Linear::ForwardRelu(const torch::Tensor& input) {
  auto output = Forward(input);
  // In place at inference: the output is ours, and a second buffer would
  // only add memory traffic.
  return torch::GradMode::is_enabled() ? torch::relu(output) : torch::relu_(output);
}

torch::Tensor Linear::EmbedRows(const torch::Tensor& /*ids*/) {
  throw std::logic_error("this linear layer cannot serve as an embedding table");
}

FloatLinear::~FloatLinear() = default;

void FloatLinear::PrepareForInference() { matmul_ = PackFloatWeight(weight_, bias_); }

void FloatLinear::ReleaseInferenceState() { matmul_.reset(); }

std::shared_ptr<FloatLinear> FloatLinear::Stack(const std::vector<const FloatLinear*>& parts) {
  if (parts.empty()) return nullptr;
  const FloatLinear& first = *parts.front();
  std::vector<torch::Tensor> weights, biases;
  for (const FloatLinear* part : parts) {
    const auto& w = part->weight_;
    if (w.size(1) != first.weight_.size(1) || w.device() != first.weight_.device() ||
        w.scalar_type() != first.weight_.scalar_type() ||
        part->bias_.defined() != first.bias_.defined()) {
      return nullptr;
    }
    weights.push_back(w);
    if (part->bias_.defined()) biases.push_back(part->bias_);
  }
  torch::NoGradGuard no_grad;
  auto weight = torch::cat(weights);
  auto stacked = std::make_shared<FloatLinear>(weight.size(1), weight.size(0), !biases.empty());
  stacked->weight_.set_data(weight);
  if (!biases.empty()) stacked->bias_.set_data(torch::cat(biases));
  stacked->PrepareForInference();
  return stacked;
}

namespace {

// The parts as T, or empty when any is another kind of layer.
template <typename T>
std::vector<const T*> AllOf(const std::vector<std::shared_ptr<Linear>>& parts) {
  std::vector<const T*> typed;
  for (const auto& part : parts) {
    const auto* as_t = dynamic_cast<const T*>(part.get());
    if (as_t == nullptr) return {};
    typed.push_back(as_t);
  }
  return typed;
}

}  // namespace

std::shared_ptr<Linear> StackProjections(const std::vector<std::shared_ptr<Linear>>& parts) {
  if (parts.size() < 2) return nullptr;
  const bool on_cpu = parts.front()->parameters().front().is_cpu();
  if (auto floats = AllOf<FloatLinear>(parts); !floats.empty()) {
    // CPU serving runs float32 only; a GPU runs whatever float type it holds.
    if (on_cpu && floats.front()->weight().scalar_type() != torch::kFloat32) return nullptr;
    return FloatLinear::Stack(floats);
  }
  if (!on_cpu) return nullptr;  // compressed layers run as float twins there
  if (auto int8s = AllOf<Int8Linear>(parts); !int8s.empty()) return Int8Linear::Stack(int8s);
  return nullptr;
}

torch::Tensor FloatLinear::Forward(const torch::Tensor& input) {
  if (matmul_ && PackedProductServes(input) && weight_.is_cpu()) {
    // Named for the op profiler (quantmt-bench-decode --profile).
    RECORD_FUNCTION("quantmt::float_linear", std::vector<c10::IValue>());
    return PackedProduct(*matmul_, input);
  }
  return DenseForward(input, weight_, bias_);
}

torch::Tensor FloatLinear::ForwardRelu(const torch::Tensor& input) {
#if TORCH_VERSION_MAJOR >= 2
  if (input.is_cuda() && bias_.defined() && !torch::GradMode::is_enabled()) {
    // Bias and ReLU in the GEMM's epilogue (cuBLASLt): one kernel, not two.
    auto sizes = input.sizes().vec();
    sizes.back() = weight_.size(0);
    return at::_addmm_activation(bias_, input.reshape({-1, input.size(-1)}), weight_.t())
        .view(sizes);
  }
#endif
  return Linear::ForwardRelu(input);
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
