// The DAQ training recipe (after the seed's post_quant-quant_noise configs):
//   stage 0  fine-tune the float model under Quant-Noise;
//   stage 1  quantize the FFN layers (k-means), fine-tune centroids and the
//            remaining float weights;
//   stage 2  the same for the token embeddings (and an untied output
//            projection);
//   stage 3  the same for attention; export the DAQ checkpoint.
// Every stage is one Trainer run in OUTPUT/stageN-<name> (resumable: a
// finished stage is skipped, an interrupted one continues from its newest
// checkpoint); OUTPUT/stage3-attention/final is the result.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/daq_params.h"
#include "train/common/trainer.h"
#include "train/compress/daq_train_linear.h"

namespace quantmt::compress {

struct DaqFinetuneOptions {
  // Data, optimization, device, logging; output_dir is the run's root.
  // tokenizer_path defaults to the model's source tokenizer.
  train::TrainerOptions trainer;
  std::string model_dir;  // the float model to compress
  DaqParams params;
  std::string float_dtype = "float16";  // weights.dtype of the result
  QuantNoiseOptions noise;
  // Training steps of stages 0-3 (Quant-Noise, FFN, embeddings, attention).
  // REQUIRES: 4 entries, each >= 1.
  std::vector<int64_t> stage_steps = {2000, 1000, 1000, 1000};
};

// Runs the stages not yet finished; returns the final model directory.
absl::StatusOr<std::string> RunDaqFinetune(const DaqFinetuneOptions& options);

}  // namespace quantmt::compress
