// quantmt-train: trains a Transformer in floating point (CPU or CUDA) and
// exports a model directory the engine serves.
//
//   quantmt-train --train_src=train.de --train_tgt=train.en
//       --dev_src=dev.de --dev_tgt=dev.en --tokenizer=models/de-en/spm.model
//       --output_dir=runs/base --max_epochs=30 --device=cuda --amp=bf16
//
// Progress lines go to stderr. Checkpoints land in OUTPUT_DIR/checkpoints;
// after a kill, the same command with --resume continues from the newest.
// The result is OUTPUT_DIR/final. Errors: a message and exit code 1.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "train/cli/cli_common.h"
#include "train/cli/trainer_flags.h"
#include "train/common/trainer.h"

namespace {

struct Architecture {
  int d_model = 512, encoder_layers = 6, decoder_layers = 6, heads = 8, ffn_dim = 2048;
  int max_positions = 256;
  std::string norm = "pre", activation = "relu", positions = "sinusoidal";
  bool separate_embeddings = false, untied_output = false;
  std::string source_language, target_language;
};

using quantmt::cli::Fail;
constexpr char kError[] = "quantmt-train: error: ";

// "train.de" -> "de": the language code, when the files are named that way.
std::string LanguageOf(const std::string& path) {
  const std::string extension = std::filesystem::path(path).extension().string();
  return extension.size() >= 3 && extension.size() <= 4 ? extension.substr(1) : "";
}

// Architecture checks; the shared flags are checked by CheckTrainerFlags.
std::string CheckArchitecture(const Architecture& a) {
  if (a.d_model <= 0 || a.encoder_layers <= 0 || a.decoder_layers <= 0 || a.heads <= 0 ||
      a.ffn_dim <= 0 || a.max_positions <= 0) {
    return "architecture sizes must be positive";
  }
  return "";
}

int Run(int argc, char** argv) {
  quantmt::train::TrainerOptions o;
  quantmt::train::TrainerFlagValues values;
  Architecture a;
  o.validate_every = 1000;
  o.save_every = 1000;
  o.dropout.residual = 0.1;

  CLI::App app{"Train a quantmt Transformer (floating point, CPU or CUDA)", "quantmt-train"};
  quantmt::train::AddTrainerFlags(app, &o, &values);
  app.add_option("--tokenizer", o.tokenizer_path, "spm.model from quantmt-spm-train")->required();

  app.add_option("--d_model", a.d_model)->capture_default_str();
  app.add_option("--encoder_layers", a.encoder_layers)->capture_default_str();
  app.add_option("--decoder_layers", a.decoder_layers)->capture_default_str();
  app.add_option("--heads", a.heads)->capture_default_str();
  app.add_option("--ffn_dim", a.ffn_dim)->capture_default_str();
  app.add_option("--norm", a.norm, "pre or post")
      ->check(CLI::IsMember({"pre", "post"}))
      ->capture_default_str();
  app.add_option("--activation", a.activation, "relu, gelu or silu")
      ->check(CLI::IsMember({"relu", "gelu", "silu"}))
      ->capture_default_str();
  app.add_option("--positions", a.positions, "sinusoidal or learned")
      ->check(CLI::IsMember({"sinusoidal", "learned"}))
      ->capture_default_str();
  app.add_option("--max_positions", a.max_positions, "Longest source/target the model takes")
      ->capture_default_str();
  app.add_flag("--separate_embeddings", a.separate_embeddings,
               "Source and target embedding tables apart (default: shared)");
  app.add_flag("--untied_output", a.untied_output,
               "Output projection apart from the target embedding (default: tied)");
  app.add_option("--src_lang", a.source_language, "Source language code (default: file suffix)");
  app.add_option("--tgt_lang", a.target_language, "Target language code (default: file suffix)");

  if (int exit_code = 0; !quantmt::cli::ParseFlags(app, argc, argv, &exit_code)) return exit_code;
  for (const std::string& problem :
       {quantmt::train::CheckTrainerFlags(o, values), CheckArchitecture(a)}) {
    if (!problem.empty()) return Fail(kError, problem);
  }
  quantmt::train::ApplyTrainerFlags(values, argc, argv, &o);

  quantmt::ModelConfig& config = o.model;
  config.d_model = a.d_model;
  config.encoder_layers.assign(a.encoder_layers, {a.heads, a.ffn_dim, 0});
  config.decoder_layers.assign(a.decoder_layers, {a.heads, a.ffn_dim, 0});
  config.norm = a.norm == "post" ? quantmt::NormPosition::kPost : quantmt::NormPosition::kPre;
  config.activation = a.activation == "gelu"   ? quantmt::Activation::kGelu
                      : a.activation == "silu" ? quantmt::Activation::kSilu
                                               : quantmt::Activation::kRelu;
  config.positions = a.positions == "learned" ? quantmt::PositionEncoding::kLearned
                                              : quantmt::PositionEncoding::kSinusoidal;
  config.max_source_positions = config.max_target_positions = a.max_positions;
  config.shared_embeddings = !a.separate_embeddings;
  config.tie_output_projection = !a.untied_output;
  const std::string source_language =
      a.source_language.empty() ? LanguageOf(o.train_source_files[0]) : a.source_language;
  const std::string target_language =
      a.target_language.empty() ? LanguageOf(o.train_target_files[0]) : a.target_language;
  if (!source_language.empty()) config.source_language = source_language;
  if (!target_language.empty()) config.target_language = target_language;

  if (auto status = quantmt::train::TrainAndExport(o); !status.ok()) {
    return Fail(kError, std::string(status.message()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return quantmt::cli::RunGuarded(kError, Run, argc, argv); }
