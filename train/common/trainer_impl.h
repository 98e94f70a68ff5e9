// Trainer::Impl, shared by the files that each implement one part of it:
//   trainer.cc         setup (device, tokenizer, data, fresh model)
//   optimization.cc    the optimizer and one update step
//   training_loop.cc   the loop over epochs and batches, progress lines
//   validation.cc      dev loss and BLEU, early stopping
//   checkpoints.cc     saving, resuming
//   export.cc          averaging the last checkpoints into OUTPUT_DIR/final
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "train/common/data.h"
#include "train/common/trainer.h"
#include "train/common/trainer_state.h"
#include "train/common/validation.h"

namespace quantmt::train {

struct Trainer::Impl {
  TrainerOptions options;
  std::ostream* log = &std::cerr;
  torch::Device device{torch::kCPU};
  std::unique_ptr<Tokenizer> tokenizer;
  SpecialIds ids;
  std::vector<Example> train;
  CorpusStats train_stats;
  bool has_dev = false;
  DevSet dev;
  ModelConfig config;
  std::shared_ptr<Transformer> model;
  std::vector<torch::Tensor> parameters;
  std::unique_ptr<torch::optim::Adam> optimizer;
  TrainerState state;
  int64_t last_saved_step = -1;
  int64_t last_validated_step = -1;
  // The batches of epoch `batches_epoch` (rebuilt when the epoch changes).
  std::vector<std::vector<int64_t>> batches;
  int64_t batches_epoch = 0;

  // trainer.cc
  absl::Status Init();
  absl::StatusOr<std::shared_ptr<Transformer>> CreateModel(const ModelConfig& model_config);
  void Log(const std::string& line) { *log << line << std::endl; }

  // optimization.cc
  absl::Status CreateOptimizer();
  // One optimizer step; false when it was skipped (non-finite gradients).
  bool Step(const Batch& cpu_batch, double lr, double* loss_sum, double* nll_sum,
            double* grad_norm);

  // training_loop.cc
  absl::StatusOr<TrainSummary> Train();
  const std::vector<std::vector<int64_t>>& EpochBatches();
  double EpochProgress();
  // Steps left until max_steps / max_epochs (the nearer), or -1 if unbounded.
  int64_t RemainingSteps();

  // validation.cc
  absl::StatusOr<Validation> Validate(Transformer& net, int beam);
  // Validates, logs and updates the early-stopping state; true: stop.
  absl::StatusOr<bool> ValidateAndTrack(double train_loss, double lr);

  // checkpoints.cc
  absl::Status SaveCheckpoint();
  absl::Status Restore(const std::string& dir);

  // export.cc
  absl::StatusOr<std::string> Export();
  std::string Provenance(const Validation* validation, const std::vector<std::string>& averaged);
};

}  // namespace quantmt::train
