// DAQ: product quantization of weight matrices bucket by bucket, and of
// whole models (post-training: k-means on the weights alone).
#pragma once

#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <memory>
#include <string>

#include "model/daq_params.h"
#include "model/transformer.h"

namespace quantmt::compress {

// One quantized matrix (see engine/model/daq_kernels.h for the layout).
struct DaqMatrix {
  torch::Tensor centroids;  // float32 [N, K, bs]
  torch::Tensor codes;      // uint8 [out, in / bs], unpacked
  torch::Tensor offsets;    // int32 [N + 1] (CPU)
};

struct DaqMatrixOptions {
  int64_t block = 8;
  int64_t buckets = 1;  // capped at the row count
  int64_t centroids = 256;
  int n_iter = 20;
  uint64_t seed = 1;
};

// Splits weight [out, in] into row buckets and runs k-means on the blocks of
// each. REQUIRES: block divides in.
DaqMatrix QuantizeMatrix(const torch::Tensor& weight, const DaqMatrixOptions& options);
// The weight the codes stand for: [out, in] float32.
torch::Tensor Reconstruct(const DaqMatrix& matrix);
// Rounds centroids through `dtype` storage ("float16", "bfloat16", "float32",
// or "int8" with the per-bucket scale stored in `scale_dtype`): the values the
// engine will read back.
torch::Tensor RoundCentroids(const torch::Tensor& centroids, const std::string& dtype,
                             const std::string& scale_dtype);

// Squared reconstruction error and squared norm per role.
struct RoleError {
  int64_t layers = 0;
  int64_t weights = 0;
  double squared_error = 0;
  double squared_norm = 0;
  double relative() const { return squared_norm > 0 ? std::sqrt(squared_error / squared_norm) : 0; }
};

struct QuantizeOptions {
  DaqParams params;
  std::string float_dtype = "float16";  // weights.dtype of the output
  uint64_t seed = 1;
  torch::Device device = torch::kCPU;  // where k-means runs
  std::ostream* log = nullptr;         // a progress line per layer; nullptr: none
};

// Builds the DAQ model of `daq_config` (scheme "daq") from the float model
// `source` with the same architecture: quantized layers from k-means, every
// other tensor copied. `errors` (optional) gets the error per role.
absl::StatusOr<std::shared_ptr<Transformer>> QuantizeTransformer(
    Transformer& source, const ModelConfig& daq_config, const QuantizeOptions& options,
    std::map<std::string, RoleError>* errors);

// What QuantizeModelDirectory did, for the summary.
struct QuantizeReport {
  int64_t parameters = 0;         // of the source model
  int64_t source_file_bytes = 0;  // its weights file
  int64_t output_file_bytes = 0;  // the DAQ weights file
  double seconds = 0;             // quantization time, loading and saving included
  std::map<std::string, RoleError> errors;
  int64_t fp32_bytes() const { return 4 * parameters; }
};

// Post-training DAQ of a float model directory into `output_dir` (weights,
// config.json recording how it was made, tokenizer files).
absl::StatusOr<QuantizeReport> QuantizeModelDirectory(const std::string& model_dir,
                                                      const std::string& output_dir,
                                                      const QuantizeOptions& options,
                                                      const std::string& command_line);
// A table: bytes before and after, ratios, error per role.
std::string FormatReport(const QuantizeReport& report);

// Copies every parameter and buffer of `to` that `from` has under the same
// name and shape; returns the names of `to`'s tensors it did not find.
std::vector<std::string> CopyMatchingTensors(torch::nn::Module& from, torch::nn::Module& to);

}  // namespace quantmt::compress
