#include "model/int8_convert.h"

#include "absl/strings/str_cat.h"
#include "model/int8_linear.h"

namespace quantmt {

absl::StatusOr<std::shared_ptr<Transformer>> QuantizeTransformer(
    Transformer& float_model, const QuantizationConfig& quantization,
    const QuantizeProgress& progress) {
  if (float_model.config().quantization.scheme != "none") {
    return absl::InvalidArgumentError(absl::StrCat("the source model is already quantized (",
                                                   float_model.config().quantization.scheme, ")"));
  }
  ModelConfig config = float_model.config();
  config.quantization = quantization;
  ASSIGN_OR_RETURN(std::shared_ptr<Transformer> quantized, Transformer::Create(config));
  torch::NoGradGuard no_grad;

  auto sources = float_model.named_modules();
  int total = 0, done = 0;
  for (const auto& item : quantized->named_modules()) {
    total += dynamic_cast<Int8Linear*>(item.value().get()) != nullptr;
  }
  for (const auto& item : quantized->named_modules()) {
    if (auto* int8 = dynamic_cast<Int8Linear*>(item.value().get())) {
      auto* source = sources.find(item.key());
      auto* float_linear = source != nullptr ? dynamic_cast<FloatLinear*>(source->get()) : nullptr;
      if (float_linear == nullptr) {
        return absl::InvalidArgumentError(
            absl::StrCat("layer '", item.key(), "' is not a float linear layer in the source"));
      }
      const auto float_parameters = float_linear->named_parameters(/*recurse=*/false);
      const auto* bias = float_parameters.find("bias");
      int8->SetFromFloat(float_linear->weight(), bias != nullptr ? *bias : torch::Tensor());
      if (progress) progress(++done, total, item.key());
    }
  }
  // Everything else floating point (layer norms, positions, biases, float
  // linears such as unquantized embeddings) is copied; scales are not in
  // the float model.
  auto float_parameters = float_model.named_parameters();
  auto float_buffers = float_model.named_buffers();
  auto copy = [&](const std::string& name, torch::Tensor& target) {
    const torch::Tensor* source = float_parameters.find(name);
    if (source == nullptr) source = float_buffers.find(name);
    if (target.is_floating_point() && source != nullptr && source->sizes() == target.sizes()) {
      target.copy_(*source);
    }
  };
  for (auto& item : quantized->named_parameters()) copy(item.key(), item.value());
  for (auto& item : quantized->named_buffers()) copy(item.key(), item.value());
  quantized->eval();
  return quantized;
}

}  // namespace quantmt
