// The QAT recipe on top of the Trainer: fine-tune a floating-point model
// with fake-quantized layers, then export it as an int8_static model.
//
//   1. make_linear: FakeQuantLinear layers (FakeQuantLinearFactory).
//   2. prepare_model (fresh runs only; a resumed run restores its
//      checkpoint): copy the FP model's parameters by name, then calibrate
//      the input observers on a few training batches, so that training
//      starts from ranges of real activations.
//   3. Training moves the observed ranges with the data (moving average of
//      max|x|) while the weights adapt to their rounding.
//   4. export_model: the averaged fake-quant model -> int8_static tensors
//      (Int8StaticTensors), loaded back through the engine's own loader, so
//      that the trainer's export BLEU is that of the int8 serving model.
#pragma once

#include <cstdint>
#include <string>

#include "train/common/trainer.h"
#include "train/compress/fake_quant_linear.h"

namespace quantmt::train {

struct QatOptions {
  // The floating-point model directory fine-tuned (quantization scheme
  // "none"); its spm.model becomes the trainer's tokenizer. REQUIRED.
  std::string model_dir;
  FakeQuantOptions fake_quant;
  // Observers start from the average max|x| over this many batches of the
  // training data (0: from the first training batch instead).
  int64_t calibration_batches = 8;
  // Pairs read for calibration, spread evenly over the training files.
  int64_t calibration_lines = 4000;
};

// Fills `trainer` for QAT of qat.model_dir: model architecture, tokenizer
// and the three hooks. Call after the trainer's data, device and batch
// options are set: the hooks use them. Errors: an unreadable or already
// quantized model, a tokenizer per side, an export dtype other than float32,
// quantize_embeddings != quantize_output_projection on a tied model.
absl::Status ConfigureQat(const QatOptions& qat, TrainerOptions* trainer);

// Copies every parameter of `target` from the parameter of the same name
// and shape in `source`; buffers of `target` (observers) are left alone.
absl::Status CopyParametersByName(torch::nn::Module& source, torch::nn::Module& target);

// Runs `model` forward without gradients on each batch in training mode
// (dropout off), which is when FakeQuantLinear layers observe their inputs.
void ObserveBatches(Transformer& model, const std::vector<Batch>& batches,
                    const torch::Device& device);

}  // namespace quantmt::train
