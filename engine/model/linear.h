// The linear layer: the seam where precisions differ.
//
// Every projection in the Transformer (attention q/k/v/out, FFN, output
// projection) is a `Linear`. Each precision is one implementation in its own
// file (floating point here, int8_linear.h, daq_linear.h; the training tools
// add fake-quantized ones), chosen by the checkpoint's quantization scheme
// through LinearFactoryFor. Tensors bind by name: an implementation registers
// the parameters and buffers it expects under its module scope ("weight",
// "bias", "weight_scale", "centroids", ...), and the checkpoint loader checks
// the file against exactly those names.
#pragma once

#include <torch/torch.h>

#include <functional>
#include <memory>

#include "model/model_config.h"
#include "quantmt/engine/status.h"

namespace quantmt {
namespace kernels {
class DnnlMatmul;
}

// What a layer is for: precisions treat them differently (DAQ uses smaller
// blocks for attention; INT8 may keep embeddings in floating point).
enum class LinearRole {
  kAttention,         // q/k/v/out projections
  kFeedForward,       // fc1, fc2
  kEmbedding,         // token embedding table [vocab, d]; also the tied output projection
  kOutputProjection,  // untied decoder output projection [vocab, d]
};

// Everything a factory needs to build one layer.
struct LinearSpec {
  int64_t in_features = 0;
  int64_t out_features = 0;
  bool bias = false;
  LinearRole role = LinearRole::kFeedForward;
};

// A module holding state derived for serving (packed weights, stacked
// projections), built by PrepareForInference once its weights are final and
// it sits on its device in its dtype. Loading new weights or moving it
// afterwards needs another call.
class InferencePreparable {
 public:
  virtual ~InferencePreparable() = default;
  virtual void PrepareForInference() = 0;
};

class Linear : public torch::nn::Module, public InferencePreparable {
 public:
  // input: [..., in_features] -> [..., out_features]
  virtual torch::Tensor Forward(const torch::Tensor& input) = 0;
  // relu(Forward(input)); a layer may fuse the two (FloatLinear on a GPU).
  virtual torch::Tensor ForwardRelu(const torch::Tensor& input);
  // Rows of the weight matrix as an embedding lookup: ids int64 [...] ->
  // [..., in_features] in the model's floating-point dtype. Only layers
  // built for LinearRole::kEmbedding need it.
  virtual torch::Tensor EmbedRows(const torch::Tensor& ids);
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // The float32 weight [out, in] this layer's products compute with (int8
  // codes x their scales, DAQ codes looked up in their codebooks), for
  // serving a compressed checkpoint as a float model (model/dequantize.h).
  // Undefined for a layer that has no such matrix.
  virtual torch::Tensor DenseWeight() { return torch::Tensor(); }
  // E.g. packs the weights for a CPU kernel.
  void PrepareForInference() override {}
  // Drops what PrepareForInference built, when another layer serves in this
  // one's place (see StackedProjection); Forward stays correct, only slower.
  virtual void ReleaseInferenceState() {}
};

// Calls PrepareForInference on every module inside `model` that has one,
// children before their parents (a parent may stack its children's weights).
void PrepareForInference(torch::nn::Module& model);

// Floating-point weights (FP32/FP16/BF16, whatever dtype the module holds).
// Parameters: weight [out, in], bias [out] (optional).
// PrepareForInference on a CPU float32 layer packs the weights for oneDNN's
// matmul, which then serves Forward without autograd (about twice
// OpenBLAS's speed here; bench/gemm_kernels.cc); training stays on LibTorch.
class FloatLinear : public Linear {
 public:
  FloatLinear(int64_t in_features, int64_t out_features, bool with_bias);
  ~FloatLinear() override;
  torch::Tensor Forward(const torch::Tensor& input) override;
  torch::Tensor ForwardRelu(const torch::Tensor& input) override;
  torch::Tensor EmbedRows(const torch::Tensor& ids) override;
  void PrepareForInference() override;
  void ReleaseInferenceState() override;
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }
  torch::Tensor DenseWeight() override { return weight_.to(torch::kFloat32); }

  const torch::Tensor& weight() const { return weight_; }
  torch::Tensor& mutable_weight() { return weight_; }

  // One prepared layer whose outputs are those of `parts` side by side
  // (weights stacked along the output axis), or null when the parts differ
  // in input size, bias, device or dtype.
  static std::shared_ptr<FloatLinear> Stack(const std::vector<const FloatLinear*>& parts);

 private:
  torch::Tensor weight_;
  torch::Tensor bias_;                           // undefined when there is no bias
  std::shared_ptr<kernels::DnnlMatmul> matmul_;  // set by PrepareForInference
};

// One prepared layer computing all `parts` side by side from one input (the
// q, k and v projections of self-attention): one GEMM instead of several,
// and for int8 one quantization of the input. Serving-only state: the parts
// stay the parameters a checkpoint binds to. Null when the precision cannot
// stack (DAQ, mixed precisions, int8 off the CPU, float16 on the CPU).
std::shared_ptr<Linear> StackProjections(const std::vector<std::shared_ptr<Linear>>& parts);

// input @ weight^T + bias for float weights [out, in]; bias may be undefined.
// On the CPU a single row goes through a matrix-vector product: OpenBLAS runs
// a 1-row GEMM several times slower than the GEMV it is (batch-1 decoding).
torch::Tensor DenseForward(const torch::Tensor& input, const torch::Tensor& weight,
                           const torch::Tensor& bias);

// Builds the Linear layers of one precision. Training tools pass their own
// (fake-quantized, Quant-Noise) factories to Transformer::Create.
using LinearFactory = std::function<std::shared_ptr<Linear>(const LinearSpec& spec)>;

// The factory for a checkpoint's quantization scheme ("none", "int8_dynamic",
// "int8_static", "daq"); InvalidArgument for a scheme this build cannot run.
absl::StatusOr<LinearFactory> LinearFactoryFor(const QuantizationConfig& quantization);

}  // namespace quantmt
