// A model trained with FakeQuantLinear layers -> an int8_static model
// directory (docs/checkpoint-format.md): the integers and scales its fake
// quantization computed with, so that the served model reproduces it.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/model_config.h"
#include "quantmt/engine/status.h"

namespace quantmt::train {

// w ~= values * scales[row]: values int8 [rows, cols] with |q| <= 127,
// scales float32 [rows] (RowScales: max|w[row]| / 127, never 0).
struct QuantizedRows {
  torch::Tensor values;
  torch::Tensor scales;
};
QuantizedRows QuantizeRows(const torch::Tensor& weight);

struct ExportedTensor {
  std::string name;
  torch::Tensor value;  // CPU, contiguous
};

// The tensors of the int8_static checkpoint of `trained`, in module order.
// For each FakeQuantLinear at module path p:
//   p.weight        int8 [out, in]
//   p.weight_scale  float32 [out]
//   p.bias          float32 [out]   (layers with a bias)
//   p.input_scale   float32 []      (observed max|x| / 127; 1 on a layer
//                                    whose input was never observed: a token
//                                    table that only embeds, where it is unused)
// Every other parameter and buffer as float32 under its own name; the
// observers' buffers (input_range, input_batches) are not exported.
std::vector<ExportedTensor> Int8StaticTensors(torch::nn::Module& trained);

// Writes config.json (`config` as given: the caller sets the quantization
// scheme, its parameters and weights_dtype "float32") and the weights file
// of Int8StaticTensors(trained) into `model_dir` (created if needed).
absl::Status WriteInt8StaticModel(torch::nn::Module& trained, const ModelConfig& config,
                                  const std::string& model_dir);

}  // namespace quantmt::train
