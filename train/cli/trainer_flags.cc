#include "train/cli/trainer_flags.h"

#include <torch/torch.h>

namespace quantmt::train {

void AddTrainerFlags(CLI::App& app, TrainerOptions* o, TrainerFlagValues* values) {
  app.add_option("--train_src", o->train_source_files, "Training sources, comma-separated")
      ->required()
      ->delimiter(',');
  app.add_option("--train_tgt", o->train_target_files, "Training targets, aligned with --train_src")
      ->required()
      ->delimiter(',');
  app.add_option("--dev_src", o->dev_source_file, "Dev sources (dev loss, BLEU)")->required();
  app.add_option("--dev_tgt", o->dev_target_file, "Dev references")->required();
  app.add_option("--dev_lines", o->dev_lines, "Use the first N dev pairs (0: all)")
      ->capture_default_str();
  app.add_option("--output_dir", o->output_dir, "Checkpoints and the final model")->required();

  app.add_option("--dropout", o->dropout.residual, "Residual and embedding dropout")
      ->capture_default_str();
  app.add_option("--attention_dropout", o->dropout.attention)->capture_default_str();
  app.add_option("--activation_dropout", o->dropout.activation)->capture_default_str();
  app.add_option("--label_smoothing", o->label_smoothing)->capture_default_str();
  app.add_option("--lr", o->lr, "Peak learning rate (inverse-sqrt schedule)")
      ->capture_default_str();
  app.add_option("--warmup", o->warmup, "Linear warm-up steps")->capture_default_str();
  app.add_option("--max_tokens", o->max_tokens, "Source+target tokens per batch, padding included")
      ->capture_default_str();
  app.add_option("--max_len", o->max_len, "Drop pairs longer than this (0: --max_positions)")
      ->capture_default_str();
  app.add_option("--max_steps", o->max_steps, "Stop after this many updates (0: no limit)")
      ->capture_default_str();
  app.add_option("--max_epochs", o->max_epochs, "Stop after this many epochs (0: no limit)")
      ->capture_default_str();
  app.add_option("--clip_norm", o->clip_norm, "Gradient norm clipping (0: off)")
      ->capture_default_str();
  app.add_option("--seed", o->seed)->capture_default_str();
  app.add_option("--device", o->device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--amp", values->amp, "Mixed precision on CUDA: none, bf16 or fp16")
      ->check(CLI::IsMember({"none", "bf16", "fp16"}))
      ->capture_default_str();
  app.add_option("--threads", values->threads, "CPU threads (0: LibTorch's default)")
      ->capture_default_str();

  app.add_option("--log_every_seconds", o->log_every_seconds)->capture_default_str();
  app.add_option("--validate_every", o->validate_every, "Steps between validations (0: at the end)")
      ->capture_default_str();
  app.add_option("--save_every", o->save_every, "Steps between checkpoints (0: at the end)")
      ->capture_default_str();
  app.add_option("--keep_checkpoints", o->keep_checkpoints)->capture_default_str();
  app.add_option("--average_last", o->average_last, "Checkpoints averaged into the final model")
      ->capture_default_str();
  app.add_option("--patience", o->patience,
                 "Validations without better BLEU before stopping (0: off)")
      ->capture_default_str();
  app.add_flag("--resume", o->resume, "Continue from the newest checkpoint in --output_dir");
  app.add_option("--beam", o->beam, "Beam size of the final dev BLEU")->capture_default_str();
  app.add_option("--export_dtype", o->export_dtype, "float32, float16 or bfloat16")
      ->check(CLI::IsMember({"float32", "float16", "bfloat16"}))
      ->capture_default_str();
}

std::string CheckTrainerFlags(const TrainerOptions& o, const TrainerFlagValues& values) {
  if (o.train_source_files.size() != o.train_target_files.size()) {
    return "--train_src and --train_tgt need the same number of files";
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
  if (values.threads < 0) return "--threads must be >= 0 (0: LibTorch's default)";
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

void ApplyTrainerFlags(const TrainerFlagValues& values, int argc, char** argv,
                       TrainerOptions* options) {
  if (values.threads > 0) torch::set_num_threads(values.threads);
  options->amp = values.amp == "bf16"   ? AmpMode::kBFloat16
                 : values.amp == "fp16" ? AmpMode::kFloat16
                                        : AmpMode::kNone;
  options->command_line = CommandLine(argc, argv);
}

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

absl::Status TrainAndExport(const TrainerOptions& options) {
  ASSIGN_OR_RETURN(std::unique_ptr<Trainer> trainer, Trainer::Create(options));
  RETURN_IF_ERROR(trainer->Train().status());
  return trainer->Export().status();
}

}  // namespace quantmt::train
