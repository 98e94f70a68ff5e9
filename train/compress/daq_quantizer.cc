#include "train/compress/daq_quantizer.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <ostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "model/daq_kernels.h"
#include "model/daq_linear.h"
#include "model/model_io.h"
#include "train/compress/kmeans.h"

namespace quantmt::compress {
namespace {

torch::ScalarType FloatType(const std::string& dtype) {
  if (dtype == "float16") return torch::kFloat16;
  if (dtype == "bfloat16") return torch::kBFloat16;
  return torch::kFloat32;
}

}  // namespace

DaqMatrix QuantizeMatrix(const torch::Tensor& weight, const DaqMatrixOptions& options) {
  torch::NoGradGuard no_grad;
  auto w = weight.detach().to(torch::kFloat32);
  const int64_t out = w.size(0), in = w.size(1), bs = options.block, nb = in / bs;
  const int64_t buckets = std::min(options.buckets, out);
  DaqMatrix result;
  result.offsets = daq::EvenBucketOffsets(out, buckets);
  result.centroids = torch::empty({buckets, options.centroids, bs}, w.options());
  result.codes = torch::empty({out, nb}, torch::kUInt8);
  const int32_t* offsets = result.offsets.data_ptr<int32_t>();
  for (int64_t b = 0; b < buckets; ++b) {
    const int64_t rows = offsets[b + 1] - offsets[b];
    auto blocks = w.narrow(0, offsets[b], rows).reshape({rows * nb, bs});
    KMeansOptions kmeans;
    kmeans.k = options.centroids;
    kmeans.n_iter = options.n_iter;
    kmeans.seed = options.seed + static_cast<uint64_t>(b);
    KMeansResult clusters = KMeans(blocks, kmeans);
    result.centroids[b].copy_(clusters.centroids);
    result.codes.narrow(0, offsets[b], rows)
        .copy_(clusters.assignments.view({rows, nb}).to(torch::kCPU, torch::kUInt8));
  }
  return result;
}

torch::Tensor Reconstruct(const DaqMatrix& matrix) {
  auto codes = matrix.codes.to(matrix.centroids.device());
  auto buckets = daq::RowBuckets(matrix.offsets.to(matrix.centroids.device()), codes.size(0));
  return daq::DecodeRows(matrix.centroids, codes, buckets);
}

torch::Tensor RoundCentroids(const torch::Tensor& centroids, const std::string& dtype,
                             const std::string& scale_dtype) {
  torch::NoGradGuard no_grad;
  if (dtype == "int8") {
    daq::Int8Centroids q = daq::QuantizeCentroidsInt8(centroids, FloatType(scale_dtype));
    return daq::DequantizeCentroids(q.values, q.scales.to(torch::kFloat32));
  }
  return centroids.to(FloatType(dtype)).to(torch::kFloat32);
}

std::vector<std::string> CopyMatchingTensors(torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard no_grad;
  std::vector<std::string> missing;
  auto source = from.named_parameters();
  auto source_buffers = from.named_buffers();
  auto copy = [&](const std::string& name, torch::Tensor& target) {
    const torch::Tensor* value = source.find(name);
    if (value == nullptr) value = source_buffers.find(name);
    if (value == nullptr || !value->sizes().equals(target.sizes())) {
      missing.push_back(name);
      return;
    }
    target.copy_(*value);
  };
  for (auto& item : to.named_parameters()) copy(item.key(), item.value());
  for (auto& item : to.named_buffers()) copy(item.key(), item.value());
  return missing;
}

absl::StatusOr<std::shared_ptr<Transformer>> QuantizeTransformer(
    Transformer& source, const ModelConfig& daq_config, const QuantizeOptions& options,
    std::map<std::string, RoleError>* errors) {
  ASSIGN_OR_RETURN(std::shared_ptr<Transformer> daq, Transformer::Create(daq_config));
  CopyMatchingTensors(source, *daq);
  const auto source_parameters = source.named_parameters();
  std::vector<std::pair<std::string, DaqLinear*>> layers;
  for (const auto& item : daq->named_modules()) {
    if (auto* layer = dynamic_cast<DaqLinear*>(item.value().get())) {
      layers.emplace_back(item.key(), layer);
    }
  }
  const std::string scale_dtype = options.float_dtype;
  for (size_t i = 0; i < layers.size(); ++i) {
    const auto start = std::chrono::steady_clock::now();
    const auto& [name, layer] = layers[i];
    const torch::Tensor* weight = source_parameters.find(name + ".weight");
    const DaqLayout& layout = layer->layout();
    if (weight == nullptr || !weight->sizes().equals({layout.out_features, layout.in_features})) {
      return absl::InvalidArgumentError(absl::StrCat("the source model has no float weight '", name,
                                                     ".weight' of shape [", layout.out_features,
                                                     ", ", layout.in_features, "]"));
    }
    DaqMatrixOptions matrix_options;
    matrix_options.block = layout.block;
    matrix_options.buckets = layout.buckets;
    matrix_options.centroids = layout.centroids;
    matrix_options.n_iter = options.params.kmeans_iterations;
    matrix_options.seed = options.seed + 1000 * i;
    DaqMatrix matrix = QuantizeMatrix(weight->to(options.device), matrix_options);
    matrix.centroids =
        RoundCentroids(matrix.centroids, options.params.centroid_dtype, scale_dtype).cpu();
    layer->SetCodes(matrix.centroids, matrix.codes, matrix.offsets, FloatType(scale_dtype));
    torch::NoGradGuard no_grad;
    auto original = weight->to(torch::kFloat32);
    auto decoded =
        daq::DecodeRows(layer->FloatCentroids().to(torch::kFloat32), layer->UnpackedCodes(),
                        daq::RowBuckets(matrix.offsets, layout.out_features));
    const double squared_error = (decoded - original).pow(2).sum().item<double>();
    const double squared_norm = original.pow(2).sum().item<double>();
    if (errors != nullptr) {
      RoleError& role = (*errors)[layout.role];
      role.layers += 1;
      role.weights += original.numel();
      role.squared_error += squared_error;
      role.squared_norm += squared_norm;
    }
    if (options.log != nullptr) {
      char line[256];
      std::snprintf(
          line, sizeof(line),
          "[%zu/%zu] %s [%ld x %ld] block %ld, %ld bucket(s), %ld centroids: "
          "relative error %.4f (%.1fs)",
          i + 1, layers.size(), name.c_str(), static_cast<long>(layout.out_features),
          static_cast<long>(layout.in_features), static_cast<long>(layout.block),
          static_cast<long>(layout.buckets), static_cast<long>(layout.centroids),
          squared_norm > 0 ? std::sqrt(squared_error / squared_norm) : 0.0,
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
      *options.log << line << std::endl;
    }
  }
  daq->eval();
  return daq;
}

namespace {

int64_t FileBytes(const std::filesystem::path& path) {
  std::error_code error;
  const auto size = std::filesystem::file_size(path, error);
  return error ? -1 : static_cast<int64_t>(size);
}

absl::Status CopyInto(const std::string& model_dir, const std::string& file,
                      const std::string& output_dir) {
  std::error_code error;
  std::filesystem::copy_file(std::filesystem::path(model_dir) / file,
                             std::filesystem::path(output_dir) / file,
                             std::filesystem::copy_options::overwrite_existing, error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat("cannot copy ", model_dir, "/", file, " to ",
                                                    output_dir, ": ", error.message()));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<QuantizeReport> QuantizeModelDirectory(const std::string& model_dir,
                                                      const std::string& output_dir,
                                                      const QuantizeOptions& options,
                                                      const std::string& command_line) {
  const auto start = std::chrono::steady_clock::now();
  ASSIGN_OR_RETURN(std::shared_ptr<Transformer> source, LoadTransformer(model_dir));
  ModelConfig config = source->config();
  if (config.quantization.scheme != "none") {
    return absl::InvalidArgumentError(absl::StrCat(model_dir, " is already quantized (scheme ",
                                                   config.quantization.scheme,
                                                   "); DAQ starts from a floating-point model"));
  }
  QuantizeReport report;
  for (const auto& p : source->parameters()) report.parameters += p.numel();
  report.source_file_bytes = FileBytes(std::filesystem::path(model_dir) / config.weights_file);

  DaqParams params = options.params;
  params.source_model = model_dir;
  params.calibration_data = "none: post-training k-means on the weights alone";
  params.recipe_json = nlohmann::json{
      {"method", "post-training"},
      {"seed", options.seed},
      {"command_line",
       command_line}}.dump();
  ModelConfig daq_config = config;
  daq_config.weights_dtype = options.float_dtype;
  daq_config.quantization = {"daq", DaqParamsToJson(params)};
  ASSIGN_OR_RETURN(std::shared_ptr<Transformer> daq,
                   QuantizeTransformer(*source, daq_config, options, &report.errors));
  nlohmann::json summary = nlohmann::json::object();
  for (const auto& [role, error] : report.errors) {
    summary[role] = {
        {"layers", error.layers}, {"weights", error.weights}, {"relative_error", error.relative()}};
  }
  params.summary_json = nlohmann::json{{"relative_reconstruction_error", summary}}.dump();
  daq_config.quantization = {"daq", DaqParamsToJson(params)};
  RETURN_IF_ERROR(SaveModelDirectory(output_dir, daq_config, *daq));
  RETURN_IF_ERROR(CopyInto(model_dir, config.source_tokenizer, output_dir));
  if (config.target_tokenizer != config.source_tokenizer) {
    RETURN_IF_ERROR(CopyInto(model_dir, config.target_tokenizer, output_dir));
  }
  report.output_file_bytes = FileBytes(std::filesystem::path(output_dir) / daq_config.weights_file);
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return report;
}

std::string FormatReport(const QuantizeReport& report) {
  std::ostringstream out;
  char line[256];
  auto ratio = [&](int64_t bytes) {
    return report.output_file_bytes > 0 ? static_cast<double>(bytes) / report.output_file_bytes
                                        : 0.0;
  };
  std::snprintf(line, sizeof(line), "parameters           %ld\n",
                static_cast<long>(report.parameters));
  out << line;
  std::snprintf(line, sizeof(line), "FP32 (4 B/param)     %ld bytes (%.1fx the DAQ file)\n",
                static_cast<long>(report.fp32_bytes()), ratio(report.fp32_bytes()));
  out << line;
  std::snprintf(line, sizeof(line), "source file          %ld bytes (%.1fx the DAQ file)\n",
                static_cast<long>(report.source_file_bytes), ratio(report.source_file_bytes));
  out << line;
  std::snprintf(line, sizeof(line), "DAQ file             %ld bytes\n",
                static_cast<long>(report.output_file_bytes));
  out << line;
  std::snprintf(line, sizeof(line), "time                 %.1f s\n", report.seconds);
  out << line;
  out << "role                 layers    weights  relative error |W - W_q| / |W|\n";
  for (const auto& [role, error] : report.errors) {
    std::snprintf(line, sizeof(line), "%-20s %6ld %10ld  %.4f\n", role.c_str(),
                  static_cast<long>(error.layers), static_cast<long>(error.weights),
                  error.relative());
    out << line;
  }
  return out.str();
}

}  // namespace quantmt::compress
