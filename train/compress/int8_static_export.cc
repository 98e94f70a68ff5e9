#include "train/compress/int8_static_export.h"

#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "checkpoint/safetensors.h"
#include "train/compress/fake_quant_linear.h"

namespace quantmt::train {

QuantizedRows QuantizeRows(const torch::Tensor& weight) {
  torch::NoGradGuard no_grad;
  const auto w = weight.detach().to(torch::kCPU, torch::kFloat);
  QuantizedRows rows;
  rows.scales = RowScales(w).contiguous();
  // round() rounds half to even, as the fake-quantization op does.
  rows.values = torch::round(w / rows.scales.unsqueeze(1))
                    .clamp(-kInt8Max, kInt8Max)
                    .to(torch::kInt8)
                    .contiguous();
  return rows;
}

std::vector<ExportedTensor> Int8StaticTensors(torch::nn::Module& trained) {
  torch::NoGradGuard no_grad;
  auto cpu_float = [](const torch::Tensor& t) {
    return t.detach().to(torch::kCPU, torch::kFloat).contiguous();
  };
  std::vector<ExportedTensor> tensors;
  std::set<std::string> converted;  // names of the fake-quant layers' own tensors
  for (const auto& item : trained.named_modules()) {
    auto* layer = dynamic_cast<FakeQuantLinear*>(item.value().get());
    if (layer == nullptr) continue;
    const std::string prefix = item.key().empty() ? "" : item.key() + ".";
    for (const char* name : {"weight", "bias", "input_range", "input_batches"}) {
      converted.insert(prefix + name);
    }
    QuantizedRows rows = QuantizeRows(layer->weight());
    tensors.push_back({prefix + "weight", rows.values});
    tensors.push_back({prefix + "weight_scale", rows.scales});
    if (layer->bias().defined()) tensors.push_back({prefix + "bias", cpu_float(layer->bias())});
    // A token table that only embeds never saw an input: the format wants
    // a scale there anyway, unused, and 1 by convention.
    const bool observed = layer->input_batches().item<float>() > 0;
    tensors.push_back(
        {prefix + "input_scale", observed ? cpu_float(layer->InputScale()) : torch::ones({})});
  }
  for (const auto& item : trained.named_parameters()) {
    if (!converted.count(item.key())) tensors.push_back({item.key(), cpu_float(item.value())});
  }
  for (const auto& item : trained.named_buffers()) {
    if (!converted.count(item.key())) tensors.push_back({item.key(), cpu_float(item.value())});
  }
  return tensors;
}

absl::Status WriteInt8StaticModel(torch::nn::Module& trained, const ModelConfig& config,
                                  const std::string& model_dir) {
  const std::string config_path = (std::filesystem::path(model_dir) / "config.json").string();
  if (config.weights_dtype != "float32") {
    return absl::InvalidArgumentError(absl::StrCat(
        config_path, ": int8_static keeps its scales in float32; weights.dtype must be float32"));
  }
  RETURN_IF_ERROR(ValidateModelConfig(config, config_path));
  const std::vector<ExportedTensor> tensors = Int8StaticTensors(trained);
  std::vector<checkpoint::TensorToWrite> to_write;
  for (const ExportedTensor& t : tensors) {
    to_write.push_back(
        {t.name,
         t.value.scalar_type() == torch::kInt8 ? checkpoint::DType::kI8 : checkpoint::DType::kF32,
         std::vector<int64_t>(t.value.sizes().begin(), t.value.sizes().end()), t.value.data_ptr(),
         static_cast<size_t>(t.value.nbytes())});
  }
  std::error_code error;
  std::filesystem::create_directories(model_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create model directory ", model_dir, ": ", error.message()));
  }
  RETURN_IF_ERROR(checkpoint::WriteSafetensors(
      (std::filesystem::path(model_dir) / config.weights_file).string(), to_write,
      {{"format", "pt"}, {"producer", "quantmt-qat"}}));
  std::ofstream out(config_path, std::ios::trunc);
  out << SerializeModelConfig(config);
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("cannot write ", config_path));
  return absl::OkStatus();
}

}  // namespace quantmt::train
