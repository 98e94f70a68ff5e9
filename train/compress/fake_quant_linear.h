// Quantization-aware training (QAT) for the int8_static scheme: a Linear
// layer that computes with the values its int8 export will hold, while the
// optimizer keeps updating float32 weights.
//
// Weights are quantized per output row and inputs per tensor, both symmetric
// with |q| <= 127 and no zero point, as docs/checkpoint-format.md specifies
// for int8_static. Gradients pass straight through the rounding ("clipped
// straight-through estimator": identity where the value lies inside the
// quantization range, zero where it was clamped).
#pragma once

#include <torch/torch.h>

#include "model/linear.h"

namespace quantmt::train {

// Symmetric int8 range: q in [-kInt8Max, kInt8Max] (-128 unused, so that
// negating a value never overflows).
inline constexpr int kInt8Max = 127;

// The smallest range a scale is derived from. An all-zero weight row (the
// padding embedding) or a never-observed input gets a tiny positive scale,
// never 0, so that q = x / scale stays defined.
inline constexpr float kMinQuantRange = 1e-8f;

// Per-row scales of a weight [rows, cols]: max(max|w[row]|, kMinQuantRange)
// / 127, float32 [rows], without gradient.
torch::Tensor RowScales(const torch::Tensor& weight);

// clamp(round(x / scale), -127, 127) * scale in float32 (round half to even),
// scale a float32 scalar tensor on x's device. Straight-through gradient
// inside the range, zero where clamped.
torch::Tensor FakeQuantizePerTensor(const torch::Tensor& input, const torch::Tensor& scale);

// The same per row of a 2-D weight: scales float32 [rows].
torch::Tensor FakeQuantizePerRow(const torch::Tensor& weight, const torch::Tensor& scales);

// Which layers QAT quantizes. Layers left out stay FloatLinear and are
// exported in floating point.
struct FakeQuantOptions {
  // Weight of the newest batch in the moving average of max|input|. The
  // first 1/ema_momentum batches are averaged with equal weights, so the
  // range starts at the first batch's maximum instead of at zero.
  double ema_momentum = 0.01;
  bool quantize_embeddings = true;         // token tables (LinearRole::kEmbedding)
  bool quantize_output_projection = true;  // an untied output projection
};

// A FloatLinear (same "weight" [out, in] and "bias" parameters, so FP
// checkpoints load by name) whose Forward sees its weight fake-quantized per
// row and its input per tensor. While the module is training, Forward also
// updates the observed input range. Buffers, saved with the trainer's
// checkpoints:
//   input_range   float32 []: moving average of max|input| over batches
//   input_batches float32 []: batches observed so far
class FakeQuantLinear : public FloatLinear {
 public:
  FakeQuantLinear(const LinearSpec& spec, double ema_momentum);

  torch::Tensor Forward(const torch::Tensor& input) override;
  // Looks the rows up and fake-quantizes each one with its own scale.
  torch::Tensor EmbedRows(const torch::Tensor& ids) override;
  // A training layer: nothing to pack (FloatLinear's serving kernel would
  // bypass the fake quantization).
  void PrepareForInference() override {}

  // The activation scale of the export: max(input_range, kMinQuantRange) / 127.
  torch::Tensor InputScale() const;
  const torch::Tensor& input_range() const { return input_range_; }
  const torch::Tensor& input_batches() const { return input_batches_; }
  const torch::Tensor& bias() const { return bias_; }  // undefined when there is none

 private:
  void Observe(const torch::Tensor& input);

  double ema_momentum_;
  torch::Tensor bias_;
  torch::Tensor input_range_;
  torch::Tensor input_batches_;
};

// Builds FakeQuantLinear layers for the roles `options` quantizes and
// FloatLinear layers for the others.
LinearFactory FakeQuantLinearFactory(const FakeQuantOptions& options);

}  // namespace quantmt::train
