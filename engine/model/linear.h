// The linear layer: the seam where precisions differ.
//
// Every projection in the Transformer (attention q/k/v/out, FFN, output
// projection) is a `Linear`. Each precision is one implementation in its own
// file (floating point here; int8 and DAQ later), chosen by the checkpoint's
// quantization scheme through MakeLinear. Tensors bind by name: an
// implementation registers the parameters and buffers it expects under its
// module scope ("weight", "bias", later "weight_scale", "codebook", ...), and
// the checkpoint loader checks the file against exactly those names.
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

class Linear : public torch::nn::Module {
 public:
  // input: [..., in_features] -> [..., out_features]
  virtual torch::Tensor Forward(const torch::Tensor& input) = 0;
  // Rows of the weight matrix as an embedding lookup: ids int64 [...] ->
  // [..., in_features] in the model's floating-point dtype. Only layers
  // built for LinearRole::kEmbedding need it.
  virtual torch::Tensor EmbedRows(const torch::Tensor& ids);
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
  // Readies the layer for serving once its weights are final and it sits on
  // its device in its dtype (e.g. packs weights for a CPU kernel). Loading
  // new weights or moving the layer afterwards needs another call.
  virtual void PrepareForInference() {}
};

// Calls PrepareForInference on every Linear inside `model`.
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
  torch::Tensor EmbedRows(const torch::Tensor& ids) override;
  void PrepareForInference() override;
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }

  const torch::Tensor& weight() const { return weight_; }
  torch::Tensor& mutable_weight() { return weight_; }

 private:
  torch::Tensor weight_;
  torch::Tensor bias_;                           // undefined when there is no bias
  std::shared_ptr<kernels::DnnlMatmul> matmul_;  // set by PrepareForInference
};

// input @ weight^T + bias for float weights [out, in]; bias may be undefined.
// On the CPU a single row goes through a matrix-vector product: OpenBLAS runs
// a 1-row GEMM several times slower than the GEMV it is (batch-1 decoding).
torch::Tensor DenseForward(const torch::Tensor& input, const torch::Tensor& weight,
                           const torch::Tensor& bias);

// Builds the Linear layers of one precision. Training tools pass their own
// (fake-quantized, Quant-Noise) factories to Transformer::Create.
using LinearFactory = std::function<std::shared_ptr<Linear>(const LinearSpec& spec)>;

// The factory for a checkpoint's quantization scheme ("none", "int8_dynamic",
// "int8_static");
// InvalidArgument for a scheme this build cannot run.
absl::StatusOr<LinearFactory> LinearFactoryFor(const QuantizationConfig& quantization);

}  // namespace quantmt
