#include "model/model_io.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/daq_linear.h"

namespace quantmt {
namespace {

using checkpoint::DType;

absl::StatusOr<torch::ScalarType> TorchType(DType dtype) {
  switch (dtype) {
    case DType::kF64:
      return torch::kFloat64;
    case DType::kF32:
      return torch::kFloat32;
    case DType::kF16:
      return torch::kFloat16;
    case DType::kBF16:
      return torch::kBFloat16;
    case DType::kI64:
      return torch::kInt64;
    case DType::kI32:
      return torch::kInt32;
    case DType::kI16:
      return torch::kInt16;
    case DType::kI8:
      return torch::kInt8;
    case DType::kU8:
      return torch::kUInt8;
    case DType::kBool:
      return torch::kBool;
  }
  return absl::InvalidArgumentError("unknown dtype");
}

absl::StatusOr<DType> StorageDType(const std::string& name) {
  if (name == "float32") return DType::kF32;
  if (name == "float16") return DType::kF16;
  if (name == "bfloat16") return DType::kBF16;
  return absl::InvalidArgumentError(absl::StrCat("weights.dtype '", name, "' is not supported"));
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ", "), "]");
}

// A copy of the tensor's bytes in a fresh (aligned) torch tensor: file data
// need not be aligned for its element type.
torch::Tensor CopyToTorch(const checkpoint::TensorView& view, torch::ScalarType type) {
  auto tensor = torch::empty(view.shape, torch::TensorOptions().dtype(type));
  if (view.nbytes > 0) std::memcpy(tensor.data_ptr(), view.data, view.nbytes);
  return tensor;
}

// Quantization scales ("<layer>.weight_scale", "<layer>.input_scale") are
// float32 whatever weights.dtype says: a float16 scale would lose the
// precision the int8 codes rely on.
bool IsScaleTensor(const std::string& name) {
  for (const char* suffix : {".weight_scale", ".input_scale"}) {
    const size_t length = std::strlen(suffix);
    if (name.size() >= length && name.compare(name.size() - length, length, suffix) == 0) {
      return true;
    }
  }
  return false;
}

// Scales must be positive and finite; int8 codes are symmetric (-127..127).
absl::Status CheckValues(const std::string& file, const std::string& name,
                         const torch::Tensor& value) {
  if (IsScaleTensor(name)) {
    const auto bad = ~(torch::isfinite(value) & (value > 0));
    if (bad.any().item<bool>()) {
      const int64_t index = bad.reshape({-1}).nonzero()[0].item<int64_t>();
      return absl::InvalidArgumentError(absl::StrCat(
          file, ": tensor '", name, "' holds ", value.reshape({-1})[index].item<float>(),
          " at index ", index, "; quantization scales must be positive and finite"));
    }
  }
  if (value.scalar_type() == torch::kInt8 && value.numel() > 0 && value.min().item<int>() < -127) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": tensor '", name, "' holds -128; int8 weights are symmetric (-127..127)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LoadWeights(const checkpoint::SafetensorsFile& file, const ModelConfig& config,
                         torch::nn::Module* model) {
  ASSIGN_OR_RETURN(DType storage, StorageDType(config.weights_dtype));
  std::set<std::string> expected;
  torch::NoGradGuard no_grad;
  auto assign = [&](const std::string& name, torch::Tensor& target) -> absl::Status {
    expected.insert(name);
    const checkpoint::TensorView* view = file.Find(name);
    if (view == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.path(), ": tensor '", name, "' is missing"));
    }
    const std::vector<int64_t> want(target.sizes().begin(), target.sizes().end());
    if (view->shape != want) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.path(), ": tensor '", name, "' has shape ", ShapeString(view->shape),
                       " but config.json implies ", ShapeString(want)));
    }
    if (IsScaleTensor(name) && view->dtype != DType::kF32) {
      return absl::InvalidArgumentError(absl::StrCat(file.path(), ": tensor '", name, "' is ",
                                                     checkpoint::DTypeName(view->dtype),
                                                     " but quantization scales are F32"));
    }
    if (!IsScaleTensor(name) && target.is_floating_point() && view->dtype != storage) {
      return absl::InvalidArgumentError(
          absl::StrCat(file.path(), ": tensor '", name, "' is ", checkpoint::DTypeName(view->dtype),
                       " but config.json declares weights.dtype ", config.weights_dtype));
    }
    ASSIGN_OR_RETURN(torch::ScalarType type, TorchType(view->dtype));
    if (!target.is_floating_point() && type != target.scalar_type()) {
      std::string expected = c10::toString(target.scalar_type());
      for (DType d : {DType::kU8, DType::kI8, DType::kI16, DType::kI32, DType::kI64}) {
        if (TorchType(d).value() == target.scalar_type()) expected = checkpoint::DTypeName(d);
      }
      return absl::InvalidArgumentError(absl::StrCat(
          file.path(), ": tensor '", name, "' is ", checkpoint::DTypeName(view->dtype),
          " but this layer expects ", expected, " (is quantization.scheme in config.json right?)"));
    }
    torch::Tensor value = CopyToTorch(*view, type);
    RETURN_IF_ERROR(CheckValues(file.path(), name, value));
    target.copy_(value);
    return absl::OkStatus();
  };
  for (auto& item : model->named_parameters()) RETURN_IF_ERROR(assign(item.key(), item.value()));
  for (auto& item : model->named_buffers()) RETURN_IF_ERROR(assign(item.key(), item.value()));

  std::vector<std::string> extra;
  for (const auto& view : file.tensors()) {
    if (!expected.count(view.name)) extra.push_back(view.name);
  }
  if (!extra.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        file.path(), ": unexpected tensor(s) for this config.json: '",
        absl::StrJoin(extra.begin(), extra.begin() + std::min<size_t>(extra.size(), 5), "', '"),
        extra.size() > 5 ? "', ..." : "'"));
  }
  // Shapes and dtypes are right; DAQ layers also check their values (codes
  // below the centroid count, bucket layout, scales).
  for (const auto& item : model->named_modules()) {
    if (const auto* layer = dynamic_cast<const DaqLinear*>(item.value().get())) {
      const absl::Status valid = layer->ValidateWeights();
      if (!valid.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat(file.path(), ": layer '", item.key(), "': ", valid.message()));
      }
    }
  }
  return absl::OkStatus();
}

namespace {

absl::StatusOr<std::shared_ptr<Transformer>> LoadTransformerWith(const std::string& model_dir,
                                                                 const LinearFactory* make_linear) {
  ASSIGN_OR_RETURN(ModelConfig config, ReadModelConfig(model_dir));
  const std::string weights = (std::filesystem::path(model_dir) / config.weights_file).string();
  ASSIGN_OR_RETURN(auto file, checkpoint::SafetensorsFile::Open(weights));
  auto model_or = make_linear != nullptr ? Transformer::Create(config, *make_linear)
                                         : Transformer::Create(config);
  if (!model_or.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(model_dir, "/config.json: ", model_or.status().message()));
  }
  std::shared_ptr<Transformer> model = *model_or;
  RETURN_IF_ERROR(LoadWeights(*file, config, model.get()));
  model->eval();
  return model;
}

}  // namespace

absl::StatusOr<std::shared_ptr<Transformer>> LoadTransformer(const std::string& model_dir) {
  return LoadTransformerWith(model_dir, nullptr);
}

absl::StatusOr<std::shared_ptr<Transformer>> LoadTransformer(const std::string& model_dir,
                                                             const LinearFactory& make_linear) {
  return LoadTransformerWith(model_dir, &make_linear);
}

absl::Status SaveModelDirectory(const std::string& model_dir, const ModelConfig& config,
                                torch::nn::Module& model) {
  ASSIGN_OR_RETURN(DType storage, StorageDType(config.weights_dtype));
  RETURN_IF_ERROR(ValidateModelConfig(config, model_dir + "/config.json"));
  std::error_code error;
  std::filesystem::create_directories(model_dir, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create model directory ", model_dir, ": ", error.message()));
  }
  // Keep the converted CPU copies alive until the file is written.
  std::vector<torch::Tensor> keep;
  std::vector<checkpoint::TensorToWrite> tensors;
  auto add = [&](const std::string& name, const torch::Tensor& value) {
    torch::Tensor cpu = value.detach().to(torch::kCPU);
    DType dtype = storage;
    if (IsScaleTensor(name)) {
      dtype = DType::kF32;
      cpu = cpu.to(torch::kFloat32);
    } else if (cpu.is_floating_point()) {
      cpu = cpu.to(storage == DType::kF16    ? torch::kFloat16
                   : storage == DType::kBF16 ? torch::kBFloat16
                                             : torch::kFloat32);
    } else {
      dtype = cpu.scalar_type() == torch::kInt8    ? DType::kI8
              : cpu.scalar_type() == torch::kUInt8 ? DType::kU8
              : cpu.scalar_type() == torch::kInt32 ? DType::kI32
                                                   : DType::kI64;
      cpu = cpu.to(cpu.scalar_type() == torch::kInt8 || cpu.scalar_type() == torch::kUInt8 ||
                           cpu.scalar_type() == torch::kInt32
                       ? cpu.scalar_type()
                       : torch::kInt64);
    }
    cpu = cpu.contiguous();
    keep.push_back(cpu);
    tensors.push_back({name, dtype, std::vector<int64_t>(cpu.sizes().begin(), cpu.sizes().end()),
                       cpu.data_ptr(), static_cast<size_t>(cpu.nbytes())});
  };
  for (auto& item : model.named_parameters()) add(item.key(), item.value());
  for (auto& item : model.named_buffers()) add(item.key(), item.value());

  const auto dir = std::filesystem::path(model_dir);
  RETURN_IF_ERROR(checkpoint::WriteSafetensors((dir / config.weights_file).string(), tensors,
                                               {{"format", "pt"}, {"producer", "quantmt"}}));
  const std::string config_path = (dir / "config.json").string();
  std::ofstream out(config_path, std::ios::trunc);
  out << SerializeModelConfig(config);
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("cannot write ", config_path));
  return absl::OkStatus();
}

}  // namespace quantmt
