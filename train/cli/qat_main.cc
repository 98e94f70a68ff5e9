// quantmt-qat: quantization-aware fine-tuning of a floating-point model,
// exported as a static int8 model (scheme int8_static) that the engine
// serves with int8 kernels.
//
//   quantmt-qat --model=models/default
//       --train_src=train.de --train_tgt=train.en --dev_src=dev.de --dev_tgt=dev.en
//       --output_dir=runs/qat --max_steps=2000 --lr=2e-4 --device=cuda --amp=bf16
//
// The recipe is train/compress/qat.h; docs/compression.md has the command
// lines. Progress lines go to stderr; the result is OUTPUT_DIR/final, with
// its dev BLEU measured on the int8 model. Errors: a message and exit code 1.
#include <CLI/CLI.hpp>
#include <string>

#include "train/cli/cli_common.h"
#include "train/cli/trainer_flags.h"
#include "train/common/trainer.h"
#include "train/compress/qat.h"

namespace {

using quantmt::cli::Fail;
constexpr char kError[] = "quantmt-qat: error: ";

int Run(int argc, char** argv) {
  quantmt::train::TrainerOptions o;
  quantmt::train::TrainerFlagValues values;
  quantmt::train::QatOptions qat;
  // Fine-tuning defaults: a short warm-up to a small peak (the seed's QAT
  // search found 2e-4 best), frequent checkpoints, float32 scales.
  o.lr = 2e-4;
  o.warmup = 200;
  o.validate_every = 500;
  o.save_every = 500;
  o.dropout.residual = 0.1;
  o.export_dtype = "float32";

  CLI::App app{"Quantization-aware fine-tuning to a static int8 model", "quantmt-qat"};
  app.add_option("--model", qat.model_dir, "Floating-point model directory to fine-tune")
      ->required();
  quantmt::train::AddTrainerFlags(app, &o, &values);
  app.add_option("--quantize_embeddings", qat.fake_quant.quantize_embeddings,
                 "Token tables in int8 (true/false)")
      ->capture_default_str();
  app.add_option("--quantize_output_projection", qat.fake_quant.quantize_output_projection,
                 "Output projection in int8 (true/false; tied models: as the tables)")
      ->capture_default_str();
  app.add_option("--observer_momentum", qat.fake_quant.ema_momentum,
                 "Weight of each new batch in the observed activation ranges")
      ->capture_default_str();
  app.add_option("--calibration_batches", qat.calibration_batches,
                 "Batches that initialize the activation ranges (0: the first training batch)")
      ->capture_default_str();
  app.add_option("--calibration_lines", qat.calibration_lines,
                 "Training pairs the calibration batches come from, spread over the files")
      ->capture_default_str();
  if (int exit_code = 0; !quantmt::cli::ParseFlags(app, argc, argv, &exit_code)) return exit_code;
  if (const std::string problem = quantmt::train::CheckTrainerFlags(o, values); !problem.empty()) {
    return Fail(kError, problem);
  }
  quantmt::train::ApplyTrainerFlags(values, argc, argv, &o);
  if (auto status = quantmt::train::ConfigureQat(qat, &o); !status.ok()) {
    return Fail(kError, std::string(status.message()));
  }

  if (auto status = quantmt::train::TrainAndExport(o); !status.ok()) {
    return Fail(kError, std::string(status.message()));
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return quantmt::cli::RunGuarded(kError, Run, argc, argv); }
