// quantmt-quantize: a float model directory -> an int8_dynamic one.
//
// Post-training, no data: weights become int8 with one scale per output
// channel (docs/checkpoint-format.md); activations are quantized per row
// when the model runs. config.json records how the copy was made.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "model/int8_convert.h"
#include "model/model_io.h"
#include "train/cli/cli_common.h"

namespace fs = std::filesystem;

namespace {

std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return text;
}

using quantmt::cli::Fail;
constexpr char kError[] = "error: ";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Quantize a quantmt model directory to dynamic INT8"};
  std::string model_dir, output_dir;
  bool no_embeddings = false, no_output_projection = false;
  app.add_option("--model", model_dir, "Float model directory")->required();
  app.add_option("--output", output_dir, "Directory to write (created)")->required();
  app.add_flag("--no-quantize-embeddings", no_embeddings,
               "Keep token tables (and the tied output projection) in floating point");
  app.add_flag("--no-quantize-output-projection", no_output_projection,
               "Keep an untied output projection in floating point");
  CLI11_PARSE(app, argc, argv);
  if (fs::exists(output_dir) && fs::equivalent(model_dir, output_dir)) {
    return Fail(kError, "--output must differ from --model");
  }

  auto float_model = quantmt::LoadTransformer(model_dir);
  if (!float_model.ok()) return Fail(kError, std::string(float_model.status().message()));
  const quantmt::ModelConfig& source_config = (*float_model)->config();

  quantmt::QuantizationConfig quantization;
  quantization.scheme = "int8_dynamic";
  quantization.params_json = nlohmann::json{
      {"quantize_embeddings", !no_embeddings},
      {"quantize_output_projection", !no_output_projection},
      {"source_model", model_dir},
      {"tool", "quantmt-quantize"},
      {"created", UtcNow()}}.dump();
  auto quantized = quantmt::QuantizeTransformer(
      **float_model, quantization, [](int done, int total, const std::string& layer) {
        std::cerr << "\rquantized " << done << "/" << total << " layers (" << layer << ")\033[K"
                  << std::flush;
      });
  std::cerr << "\n";
  if (!quantized.ok()) return Fail(kError, std::string(quantized.status().message()));

  quantmt::ModelConfig config = source_config;
  config.quantization = quantization;
  if (auto status = quantmt::SaveModelDirectory(output_dir, config, **quantized); !status.ok()) {
    return Fail(kError, std::string(status.message()));
  }
  for (const std::string& file : {source_config.source_tokenizer, source_config.target_tokenizer}) {
    std::error_code error;
    fs::copy_file(fs::path(model_dir) / file, fs::path(output_dir) / file,
                  fs::copy_options::overwrite_existing, error);
    if (error) return Fail(kError, "cannot copy " + file + ": " + error.message());
  }

  const auto before = fs::file_size(fs::path(model_dir) / source_config.weights_file);
  const auto after = fs::file_size(fs::path(output_dir) / config.weights_file);
  int64_t tensors = 0, int8_tensors = 0;
  for (const auto& item : (*quantized)->named_parameters()) {
    ++tensors;
    int8_tensors += item.value().scalar_type() == torch::kInt8;
  }
  tensors += static_cast<int64_t>((*quantized)->named_buffers().size());
  std::printf("%s -> %s (int8_dynamic)\n", model_dir.c_str(), output_dir.c_str());
  std::printf("tensors: %lld (%lld int8 weight matrices)\n", static_cast<long long>(tensors),
              static_cast<long long>(int8_tensors));
  std::printf("weights: %.2f MB -> %.2f MB (%.2fx smaller)\n", before / 1e6, after / 1e6,
              static_cast<double>(before) / static_cast<double>(after));
  return 0;
}
