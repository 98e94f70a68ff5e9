// DAQ linear layers: product-quantized weights, one codebook per bucket of
// rows (scheme "daq"; docs/checkpoint-format.md, section DAQ).
//
// Tensors under the layer's scope:
//   centroids        [N, K, bs]  weights.dtype, or int8 with centroid_scales
//   centroid_scales  [N]         weights.dtype (int8 centroids only)
//   assignments      uint8 [out, in/bs], or [out, ceil(in/bs / 2)] with 4-bit codes
//   bucket_offsets   int32 [N + 1], bucket b owns rows offsets[b] .. offsets[b+1]-1
//   bias             [out] (when the layer has one)
//
// Two ways to run it: decompress the float weight once, at
// PrepareForInference (load), and use the dense product (RAM of an FP layer;
// on the CPU in float32 the prepacked oneDNN product that FloatLinear uses,
// which then holds the only float copy), or the lookup-table kernel on the
// codes (RAM of the codes; CPU only). ChooseDaqKernel picks one per layer
// shape (bench/daq_kernels.cc measures).
#pragma once

#include <torch/torch.h>

#include <string>

#include "model/daq_params.h"
#include "model/linear.h"

namespace quantmt {

enum class DaqKernel {
  kAuto,        // ChooseDaqKernel's rule
  kDecompress,  // materialize the float weight, dense product
  kLookup,      // lookup tables over the codes, never materializing the weight
};

// Parses "auto", "decompress" or "lookup".
absl::StatusOr<DaqKernel> ParseDaqKernel(const std::string& name);

// The geometry of one quantized matrix.
struct DaqLayout {
  int64_t in_features = 0;
  int64_t out_features = 0;
  int64_t block = 8;    // weights per code; divides in_features
  int64_t buckets = 1;  // codebooks; at most out_features
  int64_t centroids = 256;
  int bits = 8;  // 8 or 4
  bool int8_centroids = false;
  std::string role;  // the role name in config.json ("feed_forward", ...)

  int64_t blocks_per_row() const { return in_features / block; }
  int64_t code_columns() const { return bits == 4 ? (blocks_per_row() + 1) / 2 : blocks_per_row(); }
};

// The layout of a layer of `spec`'s role under `params`, or nullopt-like
// false when that layer stays floating point (role not quantized, or the
// block size does not divide in_features).
bool DaqLayoutFor(const DaqParams& params, const LinearSpec& spec, DaqLayout* layout);

// Per-layer choice on the CPU by operation counts (see daq_linear.cc).
DaqKernel ChooseDaqKernel(const DaqLayout& layout);

class DaqLinear : public Linear {
 public:
  DaqLinear(const DaqLayout& layout, bool with_bias);

  torch::Tensor Forward(const torch::Tensor& input) override;
  torch::Tensor EmbedRows(const torch::Tensor& ids) override;
  // Builds the caches of the chosen kernel now, so that Forward only reads
  // (replicas share the layer across threads): with kDecompress the decoded
  // weight, packed for oneDNN on the CPU in float32.
  void PrepareForInference() override;
  int64_t in_features() const override { return layout_.in_features; }
  int64_t out_features() const override { return layout_.out_features; }
  torch::Tensor DenseWeight() override;
  // Checks the loaded values (codes below K, bucket layout, scales); the
  // loader calls it after copying the weights and names file and layer.
  absl::Status ValidateWeights() const;

  const DaqLayout& layout() const { return layout_; }
  // kAuto resolves to ChooseDaqKernel's choice (kDecompress off the CPU).
  void set_kernel(DaqKernel kernel);
  DaqKernel kernel() const { return kernel_; }
  // Whether Forward runs the prepacked oneDNN product on float32 CPU inputs
  // (kDecompress after PrepareForInference on the CPU in float32).
  bool prepacked() const { return packed_ != nullptr; }
  // Bytes this layer holds while serving: the codes and codebooks, plus the
  // decompressed weight (plain or packed) once the decompress path has run.
  int64_t ResidentBytes() const;

  // Writes codes made by the compression tools; unpacked codes uint8
  // [out, in/bs], float centroids [N, K, bs] (quantized to int8 here when the
  // layout asks), offsets int32 [N + 1].
  void SetCodes(const torch::Tensor& centroids, const torch::Tensor& codes,
                const torch::Tensor& offsets, torch::ScalarType scale_dtype);
  // The float centroids (dequantized if int8) and the unpacked codes.
  torch::Tensor FloatCentroids() const;
  torch::Tensor UnpackedCodes() const;
  const torch::Tensor& bias() const { return bias_; }

  // Integer tensors keep their type when the model changes dtype.
  void to(torch::Device device, torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Dtype dtype, bool non_blocking = false) override;
  void to(torch::Device device, bool non_blocking = false) override;

 private:
  torch::Tensor DecodedWeight(const torch::Tensor& like);
  const torch::Tensor& RowBucketIndex();
  void DropCaches();

  DaqLayout layout_;
  DaqKernel kernel_;
  torch::Tensor centroids_;        // parameter (float) or buffer (int8)
  torch::Tensor centroid_scales_;  // parameter, int8 centroids only
  torch::Tensor assignments_;      // buffer uint8
  torch::Tensor bucket_offsets_;   // buffer int32
  torch::Tensor bias_;             // parameter or undefined
  // Caches built on first use, never saved: the decompressed weight
  // (decompress path), float32 centroids (lookup path), row -> bucket.
  torch::Tensor weight_cache_, centroid_cache_, row_buckets_;
  // The decompressed weight packed for oneDNN (CPU float32, decompress path);
  // weight_cache_ is dropped once it exists.
  std::shared_ptr<kernels::DnnlMatmul> packed_;
};

// The LinearFactory for scheme "daq": DaqLinear for the quantized roles,
// FloatLinear for the rest. `kernel` overrides the per-layer choice.
absl::StatusOr<LinearFactory> DaqLinearFactory(const QuantizationConfig& quantization,
                                               DaqKernel kernel = DaqKernel::kAuto);

}  // namespace quantmt
