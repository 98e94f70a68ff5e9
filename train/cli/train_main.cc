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
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "train/common/trainer.h"

namespace {

struct Architecture {
  int d_model = 512, encoder_layers = 6, decoder_layers = 6, heads = 8, ffn_dim = 2048;
  int max_positions = 256;
  std::string norm = "pre", activation = "relu", positions = "sinusoidal";
  bool separate_embeddings = false, untied_output = false;
  std::string source_language, target_language;
};

int Fail(const std::string& message) {
  std::fprintf(stderr, "quantmt-train: error: %s\n", message.c_str());
  return 1;
}

// The command line as a shell would take it back, for the provenance.
std::string CommandLine(int argc, char** argv) {
  std::string line;
  for (int i = 0; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.find_first_of(" \t\"'$\\") != std::string::npos) {
      std::string quoted = "'";
      for (char c : arg) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
      arg = quoted + "'";
    }
    line += (i > 0 ? " " : "") + arg;
  }
  return line;
}

// "train.de" -> "de": the language code, when the files are named that way.
std::string LanguageOf(const std::string& path) {
  const std::string extension = std::filesystem::path(path).extension().string();
  return extension.size() >= 3 && extension.size() <= 4 ? extension.substr(1) : "";
}

// Range checks CLI11 does not express; "" when all is well.
std::string CheckFlags(const quantmt::train::TrainerOptions& o, const Architecture& a,
                       int threads) {
  if (o.train_source_files.size() != o.train_target_files.size()) {
    return "--train_src and --train_tgt need the same number of files";
  }
  if (a.d_model <= 0 || a.encoder_layers <= 0 || a.decoder_layers <= 0 || a.heads <= 0 ||
      a.ffn_dim <= 0 || a.max_positions <= 0) {
    return "architecture sizes must be positive";
  }
  for (double p : {o.dropout.residual, o.dropout.attention, o.dropout.activation}) {
    if (!(p >= 0.0 && p < 1.0)) return "dropout rates must be in [0, 1)";
  }
  if (!(o.label_smoothing >= 0.0 && o.label_smoothing < 1.0)) {
    return "--label_smoothing must be in [0, 1)";
  }
  if (!(o.lr > 0.0)) return "--lr must be positive";
  if (o.warmup < 0) return "--warmup must be >= 0";
  if (o.max_tokens <= 0) return "--max_tokens must be positive";
  if (o.max_len < 0) return "--max_len must be >= 0 (0: --max_positions)";
  if (o.max_steps < 0 || o.max_epochs < 0) return "--max_steps and --max_epochs must be >= 0";
  if (o.max_steps == 0 && o.max_epochs == 0) return "set --max_steps or --max_epochs";
  if (!(o.clip_norm >= 0.0)) return "--clip_norm must be >= 0 (0: off)";
  if (threads < 0) return "--threads must be >= 0 (0: LibTorch's default)";
  if (!(o.log_every_seconds > 0.0)) return "--log_every_seconds must be positive";
  if (o.validate_every < 0 || o.save_every < 0) {
    return "--validate_every and --save_every must be >= 0";
  }
  if (o.keep_checkpoints < 1) return "--keep_checkpoints must be >= 1";
  if (o.average_last < 1 || o.average_last > o.keep_checkpoints) {
    return "--average_last must be in [1, --keep_checkpoints]";
  }
  if (o.patience < 0) return "--patience must be >= 0 (0: off)";
  if (o.dev_lines < 0) return "--dev_lines must be >= 0 (0: all)";
  if (o.beam < 1) return "--beam must be >= 1";
  return "";
}

int Run(int argc, char** argv) {
  quantmt::train::TrainerOptions o;
  Architecture a;
  std::string amp = "none";
  int threads = 0;
  o.validate_every = 1000;
  o.save_every = 1000;
  o.dropout.residual = 0.1;

  CLI::App app{"Train a quantmt Transformer (floating point, CPU or CUDA)", "quantmt-train"};
  app.add_option("--train_src", o.train_source_files, "Training sources, comma-separated")
      ->required()
      ->delimiter(',');
  app.add_option("--train_tgt", o.train_target_files, "Training targets, aligned with --train_src")
      ->required()
      ->delimiter(',');
  app.add_option("--dev_src", o.dev_source_file, "Dev sources (dev loss, BLEU)")->required();
  app.add_option("--dev_tgt", o.dev_target_file, "Dev references")->required();
  app.add_option("--dev_lines", o.dev_lines, "Use the first N dev pairs (0: all)")
      ->capture_default_str();
  app.add_option("--tokenizer", o.tokenizer_path, "spm.model from quantmt-spm-train")->required();
  app.add_option("--output_dir", o.output_dir, "Checkpoints and the final model")->required();

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

  app.add_option("--dropout", o.dropout.residual, "Residual and embedding dropout")
      ->capture_default_str();
  app.add_option("--attention_dropout", o.dropout.attention)->capture_default_str();
  app.add_option("--activation_dropout", o.dropout.activation)->capture_default_str();
  app.add_option("--label_smoothing", o.label_smoothing)->capture_default_str();
  app.add_option("--lr", o.lr, "Peak learning rate (inverse-sqrt schedule)")->capture_default_str();
  app.add_option("--warmup", o.warmup, "Linear warm-up steps")->capture_default_str();
  app.add_option("--max_tokens", o.max_tokens, "Source+target tokens per batch, padding included")
      ->capture_default_str();
  app.add_option("--max_len", o.max_len, "Drop pairs longer than this (0: --max_positions)")
      ->capture_default_str();
  app.add_option("--max_steps", o.max_steps, "Stop after this many updates (0: no limit)")
      ->capture_default_str();
  app.add_option("--max_epochs", o.max_epochs, "Stop after this many epochs (0: no limit)")
      ->capture_default_str();
  app.add_option("--clip_norm", o.clip_norm, "Gradient norm clipping (0: off)")
      ->capture_default_str();
  app.add_option("--seed", o.seed)->capture_default_str();
  app.add_option("--device", o.device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--amp", amp, "Mixed precision on CUDA: none, bf16 or fp16")
      ->check(CLI::IsMember({"none", "bf16", "fp16"}))
      ->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0: LibTorch's default)")
      ->capture_default_str();

  app.add_option("--log_every_seconds", o.log_every_seconds)->capture_default_str();
  app.add_option("--validate_every", o.validate_every, "Steps between validations (0: at the end)")
      ->capture_default_str();
  app.add_option("--save_every", o.save_every, "Steps between checkpoints (0: at the end)")
      ->capture_default_str();
  app.add_option("--keep_checkpoints", o.keep_checkpoints)->capture_default_str();
  app.add_option("--average_last", o.average_last, "Checkpoints averaged into the final model")
      ->capture_default_str();
  app.add_option("--patience", o.patience,
                 "Validations without better BLEU before stopping (0: off)")
      ->capture_default_str();
  app.add_flag("--resume", o.resume, "Continue from the newest checkpoint in --output_dir");
  app.add_option("--beam", o.beam, "Beam size of the final dev BLEU")->capture_default_str();
  app.add_option("--export_dtype", o.export_dtype, "float32, float16 or bfloat16")
      ->check(CLI::IsMember({"float32", "float16", "bfloat16"}))
      ->capture_default_str();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help prints and succeeds; every usage error exits 1, not CLI11's codes.
    return app.exit(e) == 0 ? 0 : 1;
  }
  if (const std::string problem = CheckFlags(o, a, threads); !problem.empty()) {
    return Fail(problem);
  }
  if (threads > 0) torch::set_num_threads(threads);

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
  o.amp = amp == "bf16"   ? quantmt::train::AmpMode::kBFloat16
          : amp == "fp16" ? quantmt::train::AmpMode::kFloat16
                          : quantmt::train::AmpMode::kNone;
  o.command_line = CommandLine(argc, argv);

  auto trainer = quantmt::train::Trainer::Create(o);
  if (!trainer.ok()) return Fail(std::string(trainer.status().message()));
  auto summary = (*trainer)->Train();
  if (!summary.ok()) return Fail(std::string(summary.status().message()));
  auto final_dir = (*trainer)->Export();
  if (!final_dir.ok()) return Fail(std::string(final_dir.status().message()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Whatever escapes (file system errors, allocation failures) becomes a
  // message and exit code 1, never an abort.
  try {
    return Run(argc, argv);
  } catch (const std::exception& e) {
    return Fail(e.what());
  }
}
