// Model directories <-> Transformer modules.
//
// Loading checks the weights file against the module built from config.json:
// every parameter present with the right shape and the declared storage
// dtype, nothing extra. Errors name the file and the tensor.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <string>

#include "checkpoint/safetensors.h"
#include "model/transformer.h"

namespace quantmt {

// Copies the tensors of `file` into the parameters and buffers of `model`.
absl::Status LoadWeights(const checkpoint::SafetensorsFile& file, const ModelConfig& config,
                         torch::nn::Module* model);

// Reads config.json and the weights of `model_dir` into a new Transformer on
// the CPU, in float32. The caller moves it to a device or dtype.
absl::StatusOr<std::shared_ptr<Transformer>> LoadTransformer(const std::string& model_dir);
// The same with the caller's layers (e.g. a training checkpoint of
// fake-quantized layers); the file must hold exactly their tensors.
absl::StatusOr<std::shared_ptr<Transformer>> LoadTransformer(const std::string& model_dir,
                                                             const LinearFactory& make_linear);

// Writes config.json and the weights file (dtype from config.weights_dtype)
// of `model` into `model_dir` (created if needed). Tokenizer files are the
// caller's to copy.
absl::Status SaveModelDirectory(const std::string& model_dir, const ModelConfig& config,
                                torch::nn::Module& model);

}  // namespace quantmt
