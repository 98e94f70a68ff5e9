#include "model/dequantize.h"

#include "absl/strings/str_cat.h"
#include "model/linear.h"

namespace quantmt {

absl::StatusOr<std::shared_ptr<Transformer>> DequantizeTransformer(Transformer& model) {
  ModelConfig config = model.config();
  config.quantization = QuantizationConfig{};
  ASSIGN_OR_RETURN(std::shared_ptr<Transformer> dense, Transformer::Create(config));
  torch::NoGradGuard no_grad;

  auto sources = model.named_modules();
  for (const auto& item : dense->named_modules()) {
    auto* target = dynamic_cast<FloatLinear*>(item.value().get());
    if (target == nullptr) continue;
    const auto* source = sources.find(item.key());
    auto* linear = source != nullptr ? dynamic_cast<Linear*>(source->get()) : nullptr;
    torch::Tensor weight = linear != nullptr ? linear->DenseWeight() : torch::Tensor();
    if (!weight.defined() || weight.sizes() != target->weight().sizes()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "layer '", item.key(), "' has no float weight of shape [", target->out_features(), ", ",
          target->in_features(), "] in the ", model.config().quantization.scheme, " model"));
    }
    target->mutable_weight().copy_(weight);
  }
  // Biases, layer norms and positions by name; codes, scales and codebooks
  // have no counterpart in the float model (a float layer's weight is
  // copied again, unchanged).
  auto parameters = model.named_parameters();
  auto buffers = model.named_buffers();
  auto copy = [&](const std::string& name, torch::Tensor& target) {
    const torch::Tensor* source = parameters.find(name);
    if (source == nullptr) source = buffers.find(name);
    // Not int8 codes of the same shape as the float weight set above.
    if (source != nullptr && source->is_floating_point() && source->sizes() == target.sizes()) {
      target.copy_(*source);
    }
  };
  for (auto& item : dense->named_parameters()) copy(item.key(), item.value());
  for (auto& item : dense->named_buffers()) copy(item.key(), item.value());
  dense->eval();
  return dense;
}

}  // namespace quantmt
