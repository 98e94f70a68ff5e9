// quantmt-daq: DAQ (divide-and-quantize) compression of a float model.
//
//   quantmt-daq quantize --model models/default --output models/default-daq
//       [--buckets 1] [--bits 8|4] [--centroid-dtype float16|int8] [--n-iter 20]
//   quantmt-daq finetune --model models/default --output runs/daq
//       --train_src ... --train_tgt ... --dev_src ... --dev_tgt ... [--device cuda]
//
// quantize: post-training k-means on the weights, a progress line per layer
// and a summary (sizes, ratios, reconstruction error per role).
// finetune: the staged recipe (Quant-Noise fine-tuning, then FFN, embeddings
// and attention quantized in turn, centroids fine-tuned between stages).
// docs/compression.md has the full story. Errors: a message and exit code 1.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <iostream>
#include <string>
#include <vector>

#include "train/cli/cli_common.h"
#include "train/compress/daq_finetune.h"
#include "train/compress/daq_quantizer.h"

namespace {

using quantmt::DaqParams;

using quantmt::cli::Fail;
constexpr char kError[] = "quantmt-daq: error: ";

std::string CommandLine(int argc, char** argv) {
  std::string line;
  for (int i = 0; i < argc; ++i) line += (i > 0 ? " " : "") + std::string(argv[i]);
  return line;
}

// The DAQ flags both subcommands share.
struct DaqFlags {
  DaqParams params;
  int centroids = 0;  // 0: 2^bits
  std::string roles = "feed_forward,embedding,output_projection,attention";

  void Add(CLI::App* app) {
    app->add_option("--buckets", params.buckets, "Codebooks per matrix (row buckets), 1..128")
        ->check(CLI::Range(1, 128))
        ->capture_default_str();
    app->add_option("--bits", params.bits, "Bits per code: 8 (256 centroids) or 4 (16)")
        ->check(CLI::IsMember({4, 8}))
        ->capture_default_str();
    app->add_option("--centroids", centroids, "Centroids per codebook (0: 2^bits)")
        ->capture_default_str();
    app->add_option("--block-ffn", params.block_feed_forward, "Block size of FFN layers")
        ->check(CLI::Range(1, 256))
        ->capture_default_str();
    app->add_option("--block-attention", params.block_attention, "Block size of attention")
        ->check(CLI::Range(1, 256))
        ->capture_default_str();
    app->add_option("--block-embedding", params.block_embedding,
                    "Block size of token tables (and the tied output projection)")
        ->check(CLI::Range(1, 256))
        ->capture_default_str();
    app->add_option("--block-output", params.block_output_projection,
                    "Block size of an untied output projection")
        ->check(CLI::Range(1, 256))
        ->capture_default_str();
    app->add_option("--centroid-dtype", params.centroid_dtype, "float16, bfloat16, float32 or int8")
        ->check(CLI::IsMember({"float16", "bfloat16", "float32", "int8"}))
        ->capture_default_str();
    app->add_option("--n-iter", params.kmeans_iterations, "k-means iterations")
        ->check(CLI::Range(0, 10000))
        ->capture_default_str();
    app->add_option("--roles", roles, "Roles to quantize, comma-separated")->capture_default_str();
  }

  // Range checks CLI11 does not express; "" when all is well.
  std::string Finish() {
    params.centroids = centroids > 0 ? centroids : 1 << params.bits;
    if (params.centroids < 2 || params.centroids > (1 << params.bits)) {
      return "--centroids must be in 2..2^bits";
    }
    params.roles.clear();
    std::string role;
    for (size_t i = 0; i <= roles.size(); ++i) {
      if (i == roles.size() || roles[i] == ',') {
        if (params.BlockSize(role) == 0) return "--roles: unknown role '" + role + "'";
        params.roles.push_back(role);
        role.clear();
      } else {
        role += roles[i];
      }
    }
    return "";
  }

  // weights.dtype of the output: the centroids' float type, float16 with int8.
  std::string FloatDtype() const {
    return params.centroid_dtype == "int8" ? "float16" : params.centroid_dtype;
  }
};

int Run(int argc, char** argv) {
  CLI::App app{"DAQ compression: bucketed iterative product quantization", "quantmt-daq"};
  app.require_subcommand(1);
  int threads = 0;
  std::string device = "cpu";
  uint64_t seed = 1;
  app.add_option("--threads", threads, "CPU threads (0: LibTorch's default)")
      ->capture_default_str();

  // --- quantize ---
  CLI::App* quantize = app.add_subcommand("quantize", "Post-training DAQ of a float model");
  std::string model_dir, output_dir;
  DaqFlags quantize_flags;
  quantize->add_option("--model", model_dir, "Float model directory")->required();
  quantize->add_option("--output", output_dir, "DAQ model directory to write")->required();
  quantize->add_option("--device", device, "Where k-means runs: cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  quantize->add_option("--seed", seed)->capture_default_str();
  quantize_flags.Add(quantize);

  // --- finetune ---
  CLI::App* finetune = app.add_subcommand("finetune", "Quant-Noise + staged DAQ fine-tuning");
  quantmt::compress::DaqFinetuneOptions tune;
  quantmt::train::TrainerOptions& t = tune.trainer;
  DaqFlags finetune_flags;
  std::string amp = "none";
  t.lr = 1e-4;
  t.warmup = 100;
  t.dropout.residual = 0.1;
  t.validate_every = 500;
  t.save_every = 500;
  t.average_last = 1;
  finetune->add_option("--model", tune.model_dir, "Float model directory")->required();
  finetune->add_option("--output", t.output_dir, "Run directory (one subdirectory per stage)")
      ->required();
  finetune->add_option("--train_src", t.train_source_files, "Training sources, comma-separated")
      ->required()
      ->delimiter(',');
  finetune->add_option("--train_tgt", t.train_target_files, "Training targets, aligned")
      ->required()
      ->delimiter(',');
  finetune->add_option("--dev_src", t.dev_source_file, "Dev sources (BLEU per stage)");
  finetune->add_option("--dev_tgt", t.dev_target_file, "Dev references");
  finetune->add_option("--dev_lines", t.dev_lines, "First N dev pairs (0: all)")
      ->capture_default_str();
  finetune->add_option("--tokenizer", t.tokenizer_path, "spm.model (default: the model's)");
  finetune->add_option("--steps-noise", tune.stage_steps[0], "Stage 0: Quant-Noise fine-tuning")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  finetune->add_option("--steps-ffn", tune.stage_steps[1], "Stage 1: FFN quantized")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  finetune->add_option("--steps-embedding", tune.stage_steps[2], "Stage 2: embeddings quantized")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  finetune->add_option("--steps-attention", tune.stage_steps[3], "Stage 3: attention quantized")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  finetune->add_option("--noise-rate", tune.noise.rate, "Quant-Noise: blocks replaced per step")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  finetune
      ->add_option("--noise-refresh", tune.noise.refresh_steps,
                   "Quant-Noise: forward calls between codebook refreshes")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  finetune->add_option("--lr", t.lr, "Peak learning rate of every stage")->capture_default_str();
  finetune->add_option("--warmup", t.warmup, "Warm-up steps of every stage")->capture_default_str();
  finetune->add_option("--max_tokens", t.max_tokens, "Tokens per batch")->capture_default_str();
  finetune->add_option("--dropout", t.dropout.residual)->capture_default_str();
  finetune->add_option("--label_smoothing", t.label_smoothing)->capture_default_str();
  finetune->add_option("--clip_norm", t.clip_norm)->capture_default_str();
  finetune->add_option("--seed", t.seed)->capture_default_str();
  finetune->add_option("--device", t.device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  finetune->add_option("--amp", amp, "Mixed precision on CUDA: none, bf16 or fp16")
      ->check(CLI::IsMember({"none", "bf16", "fp16"}))
      ->capture_default_str();
  finetune->add_option("--validate_every", t.validate_every)->capture_default_str();
  finetune->add_option("--save_every", t.save_every)->capture_default_str();
  finetune->add_option("--keep_checkpoints", t.keep_checkpoints)->capture_default_str();
  finetune->add_option("--average_last", t.average_last)->capture_default_str();
  finetune->add_option("--beam", t.beam, "Beam of each stage's dev BLEU")->capture_default_str();
  finetune->add_option("--log_every_seconds", t.log_every_seconds)->capture_default_str();
  finetune_flags.Add(finetune);

  if (int exit_code = 0; !quantmt::cli::ParseFlags(app, argc, argv, &exit_code)) return exit_code;
  if (threads < 0) return Fail(kError, "--threads must be >= 0");
  if (threads > 0) torch::set_num_threads(threads);

  if (quantize->parsed()) {
    if (const std::string problem = quantize_flags.Finish(); !problem.empty()) {
      return Fail(kError, problem);
    }
    if (device == "cuda" && !torch::cuda::is_available()) {
      return Fail(kError, "--device cuda, but no CUDA device is available");
    }
    quantmt::compress::QuantizeOptions options;
    options.params = quantize_flags.params;
    options.float_dtype = quantize_flags.FloatDtype();
    options.seed = seed;
    options.device = device == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
    options.log = &std::cerr;
    auto report = quantmt::compress::QuantizeModelDirectory(model_dir, output_dir, options,
                                                            CommandLine(argc, argv));
    if (!report.ok()) return Fail(kError, std::string(report.status().message()));
    std::cout << "wrote " << output_dir << "\n" << quantmt::compress::FormatReport(*report);
    return 0;
  }
  if (const std::string problem = finetune_flags.Finish(); !problem.empty()) {
    return Fail(kError, problem);
  }
  if (t.train_source_files.size() != t.train_target_files.size()) {
    return Fail(kError, "--train_src and --train_tgt need the same number of files");
  }
  if (t.average_last < 1 || t.average_last > t.keep_checkpoints) {
    return Fail(kError, "--average_last must be in [1, --keep_checkpoints]");
  }
  t.amp = amp == "bf16"   ? quantmt::train::AmpMode::kBFloat16
          : amp == "fp16" ? quantmt::train::AmpMode::kFloat16
                          : quantmt::train::AmpMode::kNone;
  tune.params = finetune_flags.params;
  tune.float_dtype = finetune_flags.FloatDtype();
  tune.trainer.command_line = CommandLine(argc, argv);
  auto final_dir = quantmt::compress::RunDaqFinetune(tune);
  if (!final_dir.ok()) return Fail(kError, std::string(final_dir.status().message()));
  std::cout << "DAQ model: " << *final_dir << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return quantmt::cli::RunGuarded(kError, Run, argc, argv); }
