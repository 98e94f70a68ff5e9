// The layers DAQ fine-tuning trains: float weights under Quant-Noise, or
// product-quantized weights with trainable centroids.
//
// Quant-Noise (Fan et al. 2020, "Training with Quantization Noise for
// Extreme Model Compression"): in every training step a random fraction
// `rate` of the weight blocks is replaced by its quantized value (nearest
// centroid of its bucket's codebook), the rest stays float; gradients pass
// straight through to the float weights. The codebooks come from k-means on
// the current weights, refreshed every `refresh_steps` steps.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "model/daq_linear.h"
#include "model/daq_params.h"
#include "model/linear.h"

namespace quantmt::compress {

struct QuantNoiseOptions {
  double rate = 0.1;            // fraction of blocks replaced per step, in [0, 1]
  int64_t refresh_steps = 100;  // training steps between codebook refreshes
  int kmeans_iterations = 3;    // Lloyd iterations per refresh (warm-started)
};

// Bool [rows, blocks]: each entry true with probability `rate`, drawn from
// torch's generator of `device`.
torch::Tensor QuantNoiseMask(int64_t rows, int64_t blocks, double rate,
                             const torch::Device& device);

class DaqTrainLinear : public Linear {
 public:
  // Float: parameters weight [out, in] (+ bias); Quant-Noise in training when
  // `layout` is given (the layer will be quantized later) and rate > 0.
  // Quantized (REQUIRES layout): parameter centroids [N, K, bs], buffers
  // assignments uint8 [out, in/bs] and bucket_offsets int32 [N + 1], + bias.
  DaqTrainLinear(const LinearSpec& spec, const DaqLayout* layout, bool quantized,
                 const QuantNoiseOptions& noise);

  torch::Tensor Forward(const torch::Tensor& input) override;
  torch::Tensor EmbedRows(const torch::Tensor& ids) override;
  int64_t in_features() const override { return spec_.in_features; }
  int64_t out_features() const override { return spec_.out_features; }
  absl::Status ValidateWeights() const;

  bool quantized() const { return quantized_; }
  bool has_layout() const { return has_layout_; }
  const DaqLayout& layout() const { return layout_; }
  // Quantized layers: k-means codes of `weight` [out, in] (run on its device).
  void QuantizeFrom(const torch::Tensor& weight, int n_iter, uint64_t seed);
  // The weight of this step: float (with Quant-Noise while training) or
  // decoded from the codes; differentiable.
  torch::Tensor Weight();

  const torch::Tensor& weight() const { return weight_; }
  const torch::Tensor& centroids() const { return centroids_; }
  const torch::Tensor& assignments() const { return assignments_; }
  const torch::Tensor& bucket_offsets() const { return bucket_offsets_; }

 private:
  torch::Tensor NoisyWeight();
  void RefreshCodebooks();
  const torch::Tensor& RowBucketIndex();

  LinearSpec spec_;
  bool has_layout_;
  DaqLayout layout_;
  bool quantized_;
  QuantNoiseOptions noise_;
  torch::Tensor weight_, bias_;                             // float layers
  torch::Tensor centroids_, assignments_, bucket_offsets_;  // quantized layers
  torch::Tensor noise_codebooks_, row_buckets_;             // caches, never saved
  int64_t noise_steps_ = 0;
};

// Layers for fine-tuning under `params`: roles in `quantized_roles` quantized
// (trainable centroids), the other DAQ roles float under Quant-Noise, layers
// DAQ leaves float plain float.
LinearFactory DaqTrainFactory(const DaqParams& params,
                              const std::vector<std::string>& quantized_roles,
                              const QuantNoiseOptions& noise);

}  // namespace quantmt::compress
