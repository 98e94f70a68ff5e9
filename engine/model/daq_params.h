// Parameters of the DAQ (divide-and-quantize) scheme: the `quantization`
// block of config.json when `scheme` is "daq". Plain C++ (no torch), shared by
// the engine's DaqLinear, the compression tools and the tests.
//
// docs/checkpoint-format.md ("DAQ") describes the tensors these parameters
// shape.
#pragma once

#include <string>
#include <vector>

#include "quantmt/engine/status.h"

namespace quantmt {

// Names of the layer roles in config.json, in the order the recipe quantizes
// them (feed-forward first, attention last).
inline constexpr const char* kDaqRoleNames[] = {"feed_forward", "embedding", "output_projection",
                                                "attention"};

struct DaqParams {
  // Weights per block (sub-vector of a row), per role. A block is one code.
  int block_feed_forward = 8;
  int block_embedding = 8;  // token tables, and so the tied output projection
  int block_output_projection = 8;
  int block_attention = 4;
  // Codebooks per weight matrix; bucket b covers a contiguous range of rows
  // (output features). A matrix with fewer rows gets one bucket per row.
  // REQUIRES: 1..128.
  int buckets = 1;
  // Centroids per codebook. REQUIRES: 2..256 with 8-bit codes, 2..16 with 4-bit.
  int centroids = 256;
  // Bits per code: 8 (one byte per block) or 4 (two codes per byte).
  int bits = 8;
  // Storage of the centroids: "int8" (with one float scale per bucket) or a
  // floating-point type, which must be the file's weights.dtype.
  std::string centroid_dtype = "float16";
  // Roles whose layers are quantized; the others stay floating point.
  std::vector<std::string> roles = {"feed_forward", "embedding", "output_projection", "attention"};
  // How the checkpoint was made; recorded, never interpreted by the engine.
  int kmeans_iterations = 20;
  std::string source_model;
  std::string calibration_data;
  std::string recipe_json = "{}";   // JSON object: stages, steps, noise rate, data
  std::string summary_json = "{}";  // JSON object: sizes and reconstruction errors

  bool Quantizes(const std::string& role) const;
  // Block size of a role; 0 for an unknown role name.
  int BlockSize(const std::string& role) const;
};

// Parses the quantization parameters (the block without "scheme", as kept in
// QuantizationConfig::params_json); `origin` prefixes errors. Unknown keys
// and out-of-range values are refused with the key named.
absl::StatusOr<DaqParams> ParseDaqParams(const std::string& params_json, const std::string& origin);

// The parameters as a JSON object (ParseDaqParams reads it back).
std::string DaqParamsToJson(const DaqParams& params);

}  // namespace quantmt
