// quantmt-init-model: writes a model directory with freshly initialized
// (random) weights for a given architecture. Tests and benchmarks use it; the
// trainer starts from the same initialization.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>

#include "model/model_io.h"
#include "train/cli/cli_common.h"

namespace {

using quantmt::cli::Fail;
constexpr char kError[] = "error: ";

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Write a quantmt model directory with random weights"};
  std::string output_dir, norm = "pre", activation = "relu", positions = "sinusoidal";
  std::string dtype = "float32", tokenizer;
  int d_model = 512, encoder_layers = 6, decoder_layers = 3, heads = 8, ffn_dim = 2048;
  int vocab_size = 8000, max_positions = 256;
  bool separate_embeddings = false, untied_output = false;
  uint64_t seed = 1;
  app.add_option("--output_dir", output_dir, "Model directory to write")->required();
  app.add_option("--d_model", d_model, "Model width")->capture_default_str();
  app.add_option("--encoder_layers", encoder_layers)->capture_default_str();
  app.add_option("--decoder_layers", decoder_layers)->capture_default_str();
  app.add_option("--heads", heads)->capture_default_str();
  app.add_option("--ffn_dim", ffn_dim)->capture_default_str();
  app.add_option("--vocab_size", vocab_size, "Source and target vocabulary size")
      ->capture_default_str();
  app.add_option("--max_positions", max_positions)->capture_default_str();
  app.add_option("--norm", norm, "pre or post")
      ->check(CLI::IsMember({"pre", "post"}))
      ->capture_default_str();
  app.add_option("--activation", activation, "relu, gelu or silu")
      ->check(CLI::IsMember({"relu", "gelu", "silu"}))
      ->capture_default_str();
  app.add_option("--positions", positions, "sinusoidal or learned")
      ->check(CLI::IsMember({"sinusoidal", "learned"}))
      ->capture_default_str();
  app.add_option("--dtype", dtype, "float32, float16 or bfloat16 storage")->capture_default_str();
  app.add_flag("--separate_embeddings", separate_embeddings, "Source and target tables differ");
  app.add_flag("--untied_output", untied_output, "Output projection apart from the embedding");
  app.add_option("--tokenizer", tokenizer, "SentencePiece model to copy in as spm.model");
  app.add_option("--seed", seed)->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  quantmt::ModelConfig config;
  config.d_model = d_model;
  config.encoder_layers.assign(encoder_layers, {heads, ffn_dim, 0});
  config.decoder_layers.assign(decoder_layers, {heads, ffn_dim, 0});
  config.norm = norm == "post" ? quantmt::NormPosition::kPost : quantmt::NormPosition::kPre;
  config.activation = activation == "gelu"   ? quantmt::Activation::kGelu
                      : activation == "silu" ? quantmt::Activation::kSilu
                                             : quantmt::Activation::kRelu;
  config.positions = positions == "learned" ? quantmt::PositionEncoding::kLearned
                                            : quantmt::PositionEncoding::kSinusoidal;
  config.source_vocab_size = config.target_vocab_size = vocab_size;
  config.max_source_positions = config.max_target_positions = max_positions;
  config.shared_embeddings = !separate_embeddings;
  config.tie_output_projection = !untied_output;
  config.weights_dtype = dtype;
  config.provenance_json = R"({"producer": "quantmt-init-model", "weights": "random"})";
  if (auto status = quantmt::ValidateModelConfig(config, "flags"); !status.ok()) {
    return Fail(kError, std::string(status.message()));
  }

  torch::manual_seed(seed);
  auto model = quantmt::Transformer::Create(config);
  if (!model.ok()) return Fail(kError, std::string(model.status().message()));
  if (auto status = quantmt::SaveModelDirectory(output_dir, config, **model); !status.ok()) {
    return Fail(kError, std::string(status.message()));
  }
  if (!tokenizer.empty()) {
    std::error_code error;
    std::filesystem::copy_file(tokenizer, std::filesystem::path(output_dir) / "spm.model",
                               std::filesystem::copy_options::overwrite_existing, error);
    if (error) return Fail(kError, "cannot copy " + tokenizer + ": " + error.message());
  }
  int64_t parameters = 0;
  for (const auto& p : (*model)->parameters()) parameters += p.numel();
  std::cout << "wrote " << output_dir << ": " << parameters << " parameters, " << dtype
            << " storage\n";
  return 0;
}
