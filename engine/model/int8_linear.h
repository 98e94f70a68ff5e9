// INT8 linear layers: weights int8, symmetric, one scale per output channel.
//
//   dynamic ("int8_dynamic"): activations quantized per row at run time;
//   static  ("int8_static"):  activations quantized per tensor with a scale
//                             calibrated in training (QAT), `input_scale`.
//
// Tensors (docs/checkpoint-format.md): weight int8 [out, in], weight_scale
// float32 [out], bias [out] (optional, floating point), input_scale float32 []
// (static only). On the CPU, PrepareForInference packs the weights for the
// int8 kernels (kernels/int8_gemm.h: quantize the input rows, integer
// products, row scale x channel scale + bias; on AVX-512 VNNI all in one
// pass). Elsewhere (CUDA, or a CPU with neither kernel) it dequantizes the
// weights to the compute dtype once and runs a float GEMM on fake-quantized
// activations: the same numbers up to float rounding of the sums. (The
// serving engine runs int8 checkpoints on a GPU as float twins instead:
// model/dequantize.h.)
#pragma once

#include <torch/torch.h>

#include <memory>

#include "model/linear.h"

namespace quantmt {
namespace kernels {
class Int8Gemm;
}

enum class Int8Mode { kDynamic, kStatic };

// What config.json's quantization.params say for an int8 scheme.
struct Int8Params {
  Int8Mode mode = Int8Mode::kDynamic;
  bool quantize_embeddings = true;         // token tables + the tied projection
  bool quantize_output_projection = true;  // the untied output projection
};

// Parses an "int8_dynamic"/"int8_static" quantization block; unknown keys are
// kept by the caller, wrong types of known keys are refused.
absl::StatusOr<Int8Params> ParseInt8Params(const QuantizationConfig& quantization);

// The factory for an int8 scheme: Int8Linear for the roles the params
// quantize, FloatLinear for the others.
LinearFactory Int8LinearFactory(const Int8Params& params);

class Int8Linear : public Linear {
 public:
  Int8Linear(int64_t in_features, int64_t out_features, bool with_bias, Int8Mode mode);
  ~Int8Linear() override;

  torch::Tensor Forward(const torch::Tensor& input) override;
  torch::Tensor EmbedRows(const torch::Tensor& ids) override;
  void PrepareForInference() override;
  void ReleaseInferenceState() override { Unprepare(); }
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }
  torch::Tensor DenseWeight() override;

  // Quantizes float weights [out, in] (and copies the bias) into this layer;
  // for int8_static also sets the input scale (> 0). Call PrepareForInference
  // afterwards to serve.
  void SetFromFloat(const torch::Tensor& weight, const torch::Tensor& bias);
  void SetInputScale(float scale);

  // One prepared layer whose outputs are those of `parts` side by side
  // (codes and scales stacked along the output axis), or null when the parts
  // differ in mode, input size, bias, device or (static mode) input scale.
  // Dynamic mode quantizes each input row once for all parts, with the scale
  // each part alone would use, so the outputs are exactly the parts'.
  static std::shared_ptr<Int8Linear> Stack(const std::vector<const Int8Linear*>& parts);

  Int8Mode mode() const { return mode_; }
  const torch::Tensor& weight() const { return weight_; }
  const torch::Tensor& weight_scale() const { return weight_scale_; }
  const torch::Tensor& input_scale() const { return input_scale_; }

  // Moves to a device keeping the int8 codes and scales as they are; only the
  // bias takes the floating-point dtype.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

 private:
  torch::Tensor ForwardCpuInt8(const torch::Tensor& input);
  torch::Tensor ForwardDequantized(const torch::Tensor& input, const torch::Tensor& weight);
  void Unprepare();

  Int8Mode mode_;
  torch::ScalarType compute_dtype_ = torch::kFloat32;
  torch::Tensor weight_;        // int8 [out, in]
  torch::Tensor weight_scale_;  // float32 [out]
  torch::Tensor bias_;          // [out] or undefined
  torch::Tensor input_scale_;   // float32 [], static mode only

  // Set by PrepareForInference: one of the two.
  std::unique_ptr<kernels::Int8Gemm> gemm_;  // CPU int8 kernels
  torch::Tensor dequantized_weight_;         // [out, in] in compute_dtype_
  float input_scale_value_ = 0.0f;
};

}  // namespace quantmt
