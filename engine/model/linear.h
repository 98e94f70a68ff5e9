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

class Linear : public torch::nn::Module {
 public:
  // input: [..., in_features] -> [..., out_features]
  virtual torch::Tensor Forward(const torch::Tensor& input) = 0;
  virtual int64_t in_features() const = 0;
  virtual int64_t out_features() const = 0;
};

// Floating-point weights (FP32/FP16/BF16, whatever dtype the module holds).
// Parameters: weight [out, in], bias [out] (optional).
class FloatLinear : public Linear {
 public:
  FloatLinear(int64_t in_features, int64_t out_features, bool with_bias);
  torch::Tensor Forward(const torch::Tensor& input) override;
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }

  const torch::Tensor& weight() const { return weight_; }

 private:
  torch::Tensor weight_;
  torch::Tensor bias_;  // undefined when there is no bias
};

// input @ weight^T + bias for float weights [out, in]; bias may be undefined.
// On the CPU a single row goes through a matrix-vector product: OpenBLAS runs
// a 1-row GEMM several times slower than the GEMV it is (batch-1 decoding).
torch::Tensor DenseForward(const torch::Tensor& input, const torch::Tensor& weight,
                           const torch::Tensor& bias);

// Builds the Linear layers of one precision: (in, out, with_bias) -> layer.
using LinearFactory =
    std::function<std::shared_ptr<Linear>(int64_t in_features, int64_t out_features, bool bias)>;

// The factory for a checkpoint's quantization scheme (only "none" so far);
// InvalidArgument for a scheme this build cannot run.
absl::StatusOr<LinearFactory> LinearFactoryFor(const QuantizationConfig& quantization);

}  // namespace quantmt
