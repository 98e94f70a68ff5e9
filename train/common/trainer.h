// FP training of a Transformer: the loop, validation, checkpoints, export.
//
//   OUTPUT_DIR/checkpoints/step_N/   a model directory (float32 weights,
//                                    spm.model) + optimizer.pt (Adam state)
//                                    + trainer_state.json (step, epoch, ...)
//   OUTPUT_DIR/final/                the averaged last checkpoints, in the
//                                    export dtype, with provenance
//
// Resuming from a checkpoint continues exactly where the run stopped: the
// batches of an epoch depend only on (seed, epoch), and the dropout masks of
// a step only on (seed, step), so a killed and resumed run gives the same
// weights as one that was never interrupted.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "model/model_config.h"
#include "model/transformer.h"
#include "quantmt/engine/status.h"
#include "quantmt/engine/tokenizer.h"
#include "train/common/data.h"

namespace quantmt::train {

// Mixed precision on CUDA. bf16 needs no loss scaling; fp16 uses a dynamic
// loss scale (overflowing steps are skipped and the scale halved).
enum class AmpMode { kNone, kBFloat16, kFloat16 };

struct TrainerOptions {
  // --- data ---
  std::vector<std::string> train_source_files, train_target_files;  // aligned lists
  std::string dev_source_file, dev_target_file;                     // empty: no validation
  int64_t dev_lines = 0;                                            // dev pairs read (0: all)
  std::string tokenizer_path;  // spm.model, copied into model dirs
  std::string output_dir;
  int64_t max_len = 0;  // longest source/target kept, eos included (0: max positions)

  // --- model; on resume the checkpoint's config.json wins ---
  ModelConfig model;  // vocabulary size and special ids are taken from the tokenizer
  DropoutConfig dropout;

  // --- optimization ---
  double label_smoothing = 0.1;
  double lr = 7e-4;  // peak of the inverse-sqrt schedule
  int64_t warmup = 4000;
  int64_t max_tokens = 8192;  // per batch: source + target positions, padding included
  int64_t max_steps = 0;      // 0: no limit
  int64_t max_epochs = 0;     // 0: no limit
  double clip_norm = 0.0;     // 0: no clipping
  uint64_t seed = 1;
  std::string device = "cpu";  // "cpu" or "cuda"
  AmpMode amp = AmpMode::kNone;

  // --- side tasks ---
  double log_every_seconds = 5.0;
  int64_t validate_every = 1000;  // steps; 0: only at the end
  int64_t save_every = 1000;      // steps; a checkpoint is also written at the end
  int keep_checkpoints = 5;
  int average_last = 5;  // checkpoints averaged into the export
  int patience = 0;      // validations without a better BLEU before stopping (0: never)
  bool resume = false;   // continue from the newest checkpoint, if any

  // --- fine-tuning and compression hooks (optional) ---
  // The layers of the model being trained (fake-quantized, Quant-Noise,
  // trainable codebooks). Used for fresh runs, resumed runs and averaging.
  // Default: those of options.model.quantization (floating point).
  LinearFactory make_linear;
  // Called once on a fresh run, after the model is built and before training
  // starts: loads pretrained weights, computes codebooks, freezes tensors.
  std::function<absl::Status(Transformer& model)> prepare_model;
  // Turns the averaged trained model into the one exported, validated and
  // saved (e.g. fake-quantized float -> int8), editing the config it is
  // saved with (quantization scheme and parameters). Default: the trained
  // model, floating-point tensors rounded through export_dtype.
  std::function<absl::StatusOr<std::shared_ptr<Transformer>>(Transformer& trained,
                                                             ModelConfig* exported)>
      export_model;
  // --- export ---
  int beam = 4;  // beam size of the BLEU measured at export
  std::string export_dtype = "float16";
  std::string command_line;  // recorded in the provenance

  std::ostream* log = nullptr;  // progress and validation lines; nullptr: std::cerr
};

// Sums over the non-pad positions of one batch (float32 scalars).
struct LossSums {
  torch::Tensor loss;  // label-smoothed cross-entropy
  torch::Tensor nll;   // plain negative log-likelihood
  int64_t tokens = 0;
};

// Label-smoothed cross-entropy as torch.nn.CrossEntropyLoss(label_smoothing=e)
// defines it, per token: (1 - e) * -log p(y) + e * mean_j(-log p(j)).
// logits [B, T, V] (any float dtype; computed in float32), target [B, T].
LossSums LabelSmoothedCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target,
                                   int64_t pad_id, double epsilon);

// lr = peak * min(step / warmup, sqrt(warmup / step)) for step >= 1
// (warmup <= 0: peak / sqrt(step)).
double InverseSqrtLearningRate(double peak, int64_t warmup, int64_t step);

// The complete checkpoints under OUTPUT_DIR/checkpoints as (step, dir),
// oldest first. Half-written ones (no trainer_state.json) are left out.
std::vector<std::pair<int64_t, std::string>> ListCheckpoints(const std::string& output_dir);

// Sets every parameter and floating-point buffer of `model` to its mean over
// the model directories `dirs` (accumulated in float64), and every integer
// buffer (e.g. the codes of quantized layers) to its value in the last
// directory. The directories are read with the layers of `make_linear`
// (default: those of each directory's config.json).
absl::Status AverageCheckpoints(const std::vector<std::string>& dirs, torch::nn::Module* model,
                                const LinearFactory& make_linear = nullptr);

// What one Train() call did.
struct TrainSummary {
  int64_t first_step = 0;  // step count when this call started (0 unless resumed)
  int64_t step = 0;        // step count at the end
  int64_t epoch = 0;       // epoch at the end (1-based)
  bool early_stopped = false;
  double best_bleu = -1.0;     // best dev BLEU so far (-1: never validated)
  std::vector<double> losses;  // label-smoothed loss per step of this call
};

class Trainer {
 public:
  // Loads the tokenizer and the data, then builds a fresh model or, with
  // options.resume, restores the newest checkpoint (model, optimizer, step,
  // epoch, early-stopping state). Refuses to start afresh over existing
  // checkpoints.
  static absl::StatusOr<std::unique_ptr<Trainer>> Create(const TrainerOptions& options);
  ~Trainer();

  // Trains until max_steps, max_epochs or early stopping; always leaves a
  // checkpoint of the last step.
  absl::StatusOr<TrainSummary> Train();

  // Averages the last average_last checkpoints, measures dev BLEU of the
  // result as stored (export dtype), and writes OUTPUT_DIR/final. Returns
  // the final directory.
  absl::StatusOr<std::string> Export();

  Transformer& model();
  int64_t step() const;

 private:
  struct Impl;
  explicit Trainer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace quantmt::train
