#include "serving/loaded_model.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "model/dequantize.h"
#include "model/model_io.h"
#include "serving/quote_input.h"

namespace quantmt {
namespace {

absl::StatusOr<torch::ScalarType> ComputeType(const std::string& name, DeviceKind device) {
  if (name == "auto") return device == DeviceKind::kCuda ? torch::kFloat16 : torch::kFloat32;
  if (name == "float32") return torch::kFloat32;
  if (device == DeviceKind::kCpu) {
    return absl::InvalidArgumentError(
        absl::StrCat("compute_type ", QuoteInput(name), " is not supported on CPU (use float32)"));
  }
  if (name == "float16") return torch::kFloat16;
  if (name == "bfloat16") return torch::kBFloat16;
  return absl::InvalidArgumentError(absl::StrCat("unknown compute_type ", QuoteInput(name),
                                                 " (expected auto, float32, float16 or bfloat16)"));
}

absl::StatusOr<torch::Device> DeviceFor(const RuntimeOptions& options) {
  if (options.device == DeviceKind::kCpu) return torch::Device(torch::kCPU);
  if (!torch::cuda::is_available() || options.device_index < 0 ||
      options.device_index >= static_cast<int>(torch::cuda::device_count())) {
    return absl::FailedPreconditionError(
        absl::StrCat("CUDA device ", options.device_index, " is not available"));
  }
  return torch::Device(torch::kCUDA, options.device_index);
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir,
                                                         const std::string& file,
                                                         int expected_vocab_size) {
  const std::string path = (std::filesystem::path(model_dir) / file).string();
  std::string error;
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::Load(path, &error);
  if (!tokenizer) return absl::InvalidArgumentError(error);
  if (tokenizer->vocab_size() != expected_vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": vocabulary has ", tokenizer->vocab_size(),
                     " pieces but config.json says ", expected_vocab_size));
  }
  return tokenizer;
}

}  // namespace

absl::StatusOr<std::shared_ptr<LoadedModel>> PlaceModel(std::shared_ptr<Transformer> transformer,
                                                        const RuntimeOptions& options,
                                                        const std::string& model_dir) {
  ASSIGN_OR_RETURN(torch::ScalarType dtype, ComputeType(options.compute_type, options.device));
  ASSIGN_OR_RETURN(torch::Device device, DeviceFor(options));
  const std::string scheme = transformer->config().quantization.scheme;  // of the checkpoint
  if (device.is_cuda() && scheme != "none") {
    // Compressed checkpoints run as float models on the GPU (why: model/dequantize.h).
    ASSIGN_OR_RETURN(transformer, DequantizeTransformer(*transformer));
  }
  try {
    transformer->to(device, dtype);
    PrepareForInference(*transformer);  // e.g. packs weights for the CPU kernels
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot place the model on ", device.str(), ": ", e.what()));
  }
  transformer->eval();
  auto loaded = std::make_shared<LoadedModel>();
  const ModelConfig& config = transformer->config();
  ModelInfo& info = loaded->info;
  info.model_dir = model_dir;
  info.source_language = config.source_language;
  info.target_language = config.target_language;
  info.quantization = scheme;
  info.compute_type = dtype == torch::kFloat32   ? "float32"
                      : dtype == torch::kFloat16 ? "float16"
                                                 : "bfloat16";
  info.device = device.str();
  for (const auto& parameter : transformer->parameters()) {
    info.num_parameters += parameter.numel();
    loaded->weights_bytes += parameter.numel() * static_cast<int64_t>(parameter.element_size());
  }
  for (const auto& buffer : transformer->buffers()) {
    loaded->weights_bytes += buffer.numel() * static_cast<int64_t>(buffer.element_size());
  }
  info.max_source_positions = config.max_source_positions;
  loaded->transformer = std::move(transformer);
  loaded->device = device;
  loaded->cuda_graphs = options.cuda_graphs;
  return loaded;
}

absl::StatusOr<std::shared_ptr<LoadedModel>> LoadModelDirectory(const std::string& model_dir,
                                                                const RuntimeOptions& options) {
  // Option errors first: they are cheaper than reading the weights.
  RETURN_IF_ERROR(ComputeType(options.compute_type, options.device).status());
  RETURN_IF_ERROR(DeviceFor(options).status());
  ASSIGN_OR_RETURN(std::shared_ptr<Transformer> transformer, LoadTransformer(model_dir));
  const ModelConfig& config = transformer->config();
  ASSIGN_OR_RETURN(std::shared_ptr<const Tokenizer> source_tokenizer,
                   LoadTokenizer(model_dir, config.source_tokenizer, config.source_vocab_size));
  ASSIGN_OR_RETURN(std::shared_ptr<const Tokenizer> target_tokenizer,
                   LoadTokenizer(model_dir, config.target_tokenizer, config.target_vocab_size));
  const std::string weights_file = config.weights_file;
  ASSIGN_OR_RETURN(auto loaded, PlaceModel(std::move(transformer), options, model_dir));
  loaded->source_tokenizer = std::move(source_tokenizer);
  loaded->target_tokenizer = std::move(target_tokenizer);
  std::error_code error;
  loaded->info.weights_file_bytes = static_cast<int64_t>(
      std::filesystem::file_size(std::filesystem::path(model_dir) / weights_file, error));
  return loaded;
}

int MaxInputLength(const TranslationOptions& options, const ModelConfig& config) {
  return options.max_input_length > 0
             ? std::min(options.max_input_length, config.max_source_positions)
             : config.max_source_positions;
}

absl::Status CheckSourceIds(const std::vector<int>& source, size_t index, int max_input_length,
                            const ModelConfig& config) {
  if (static_cast<int>(source.size()) > max_input_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("sentence ", index, " has ", source.size(), " tokens, more than the limit of ",
                     max_input_length, " (max_input_length); split it into shorter sentences"));
  }
  for (int id : source) {
    if (id < 0 || id >= config.source_vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("sentence ", index, ": token id ", id, " is outside the source vocabulary"));
    }
  }
  return absl::OkStatus();
}

SearchOptions ToSearchOptions(const TranslationOptions& options, const ModelConfig& config) {
  SearchOptions search;
  search.beam_size = options.beam_size;
  search.num_hypotheses = options.num_hypotheses;
  search.length_penalty = options.length_penalty;
  // Learned and sinusoidal positions are both defined up to max_target_positions.
  search.max_length = std::min(options.max_length, config.max_target_positions);
  search.min_length = std::min(options.min_length, search.max_length);
  return search;
}

}  // namespace quantmt
