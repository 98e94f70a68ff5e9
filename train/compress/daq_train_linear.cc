#include "train/compress/daq_train_linear.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "model/daq_kernels.h"
#include "train/compress/daq_quantizer.h"
#include "train/compress/kmeans.h"

namespace quantmt::compress {

torch::Tensor QuantNoiseMask(int64_t rows, int64_t blocks, double rate,
                             const torch::Device& device) {
  return torch::rand({rows, blocks}, torch::TensorOptions().device(device)) < rate;
}

DaqTrainLinear::DaqTrainLinear(const LinearSpec& spec, const DaqLayout* layout, bool quantized,
                               const QuantNoiseOptions& noise)
    : spec_(spec),
      has_layout_(layout != nullptr),
      layout_(layout != nullptr ? *layout : DaqLayout{}),
      quantized_(quantized && layout != nullptr),
      noise_(noise) {
  const int64_t in = spec.in_features, out = spec.out_features;
  if (quantized_) {
    centroids_ = register_parameter(
        "centroids", torch::zeros({layout_.buckets, layout_.centroids, layout_.block}));
    assignments_ = register_buffer("assignments",
                                   torch::zeros({out, layout_.blocks_per_row()}, torch::kUInt8));
    bucket_offsets_ =
        register_buffer("bucket_offsets", daq::EvenBucketOffsets(out, layout_.buckets));
  } else {
    // Xavier-uniform like FloatLinear; fine-tuning loads real weights anyway.
    const double bound = std::sqrt(6.0 / static_cast<double>(in + out));
    weight_ = register_parameter("weight", torch::empty({out, in}).uniform_(-bound, bound));
  }
  if (spec.bias) bias_ = register_parameter("bias", torch::zeros({out}));
}

const torch::Tensor& DaqTrainLinear::RowBucketIndex() {
  if (!row_buckets_.defined() || row_buckets_.device() != bucket_offsets_.device()) {
    row_buckets_ = daq::RowBuckets(bucket_offsets_, spec_.out_features);
  }
  return row_buckets_;
}

void DaqTrainLinear::QuantizeFrom(const torch::Tensor& weight, int n_iter, uint64_t seed) {
  DaqMatrixOptions options;
  options.block = layout_.block;
  options.buckets = layout_.buckets;
  options.centroids = layout_.centroids;
  options.n_iter = n_iter;
  options.seed = seed;
  DaqMatrix matrix = QuantizeMatrix(weight, options);
  torch::NoGradGuard no_grad;
  centroids_.copy_(matrix.centroids);
  assignments_.copy_(matrix.codes);
  bucket_offsets_.copy_(matrix.offsets);
  row_buckets_ = torch::Tensor();
}

void DaqTrainLinear::RefreshCodebooks() {
  torch::NoGradGuard no_grad;
  const int64_t out = spec_.out_features, nb = layout_.blocks_per_row(), bs = layout_.block;
  auto offsets = daq::EvenBucketOffsets(out, layout_.buckets);
  const int32_t* o = offsets.data_ptr<int32_t>();
  auto blocks = weight_.detach().view({out, nb, bs});
  std::vector<torch::Tensor> codebooks;
  for (int64_t b = 0; b < layout_.buckets; ++b) {
    KMeansOptions options;
    options.k = layout_.centroids;
    options.n_iter = noise_.kmeans_iterations;
    options.seed = static_cast<uint64_t>(noise_steps_ * 131 + b);
    auto init = noise_codebooks_.defined() ? noise_codebooks_[b] : torch::Tensor();
    codebooks.push_back(
        KMeans(blocks.narrow(0, o[b], o[b + 1] - o[b]).reshape({-1, bs}), options, init).centroids);
  }
  noise_codebooks_ = torch::stack(codebooks);
}

torch::Tensor DaqTrainLinear::NoisyWeight() {
  if (!is_training() || !has_layout_ || !(noise_.rate > 0)) return weight_;
  if (!noise_codebooks_.defined() || noise_codebooks_.device() != weight_.device() ||
      (noise_.refresh_steps > 0 && noise_steps_ % noise_.refresh_steps == 0)) {
    RefreshCodebooks();
  }
  ++noise_steps_;
  const int64_t out = spec_.out_features, nb = layout_.blocks_per_row(), bs = layout_.block;
  torch::Tensor delta;
  {
    torch::NoGradGuard no_grad;
    auto blocks = weight_.detach().view({out, nb, bs});
    auto mask = QuantNoiseMask(out, nb, noise_.rate, weight_.device()).unsqueeze(2);
    delta = torch::zeros_like(blocks);
    auto offsets = daq::EvenBucketOffsets(out, layout_.buckets);
    const int32_t* o = offsets.data_ptr<int32_t>();
    for (int64_t b = 0; b < layout_.buckets; ++b) {
      const int64_t rows = o[b + 1] - o[b];
      auto bucket_mask = mask.narrow(0, o[b], rows);
      auto chosen = blocks.narrow(0, o[b], rows).masked_select(bucket_mask).view({-1, bs});
      if (chosen.size(0) == 0) continue;
      auto codebook = noise_codebooks_[b];
      auto quantized = codebook.index_select(0, NearestCentroid(chosen, codebook));
      delta.narrow(0, o[b], rows)
          .masked_scatter_(bucket_mask.expand({rows, nb, bs}), quantized - chosen);
    }
  }
  // Straight-through: the value of the quantized blocks, the gradient of W.
  return weight_ + delta.view({out, spec_.in_features});
}

torch::Tensor DaqTrainLinear::Weight() {
  if (quantized_) return daq::DecodeRows(centroids_, assignments_, RowBucketIndex());
  return NoisyWeight();
}

torch::Tensor DaqTrainLinear::Forward(const torch::Tensor& input) {
  return DenseForward(input, Weight(), bias_);
}

torch::Tensor DaqTrainLinear::EmbedRows(const torch::Tensor& ids) {
  if (!quantized_) return torch::embedding(NoisyWeight(), ids);
  auto flat = ids.reshape({-1});
  auto rows = daq::DecodeRows(centroids_, assignments_.index_select(0, flat),
                              RowBucketIndex().index_select(0, flat));
  auto sizes = ids.sizes().vec();
  sizes.push_back(spec_.in_features);
  return rows.view(sizes);
}

absl::Status DaqTrainLinear::ValidateWeights() const {
  if (!quantized_) return absl::OkStatus();
  if (assignments_.to(torch::kInt32).ge(layout_.centroids).any().item<bool>()) {
    return absl::InvalidArgumentError(
        absl::StrCat("tensor 'assignments' holds a code >= ", layout_.centroids, " centroids"));
  }
  auto o = bucket_offsets_.to(torch::kCPU, torch::kLong);
  auto steps = o.narrow(0, 1, layout_.buckets) - o.narrow(0, 0, layout_.buckets);
  if (o[0].item<int64_t>() != 0 || o[layout_.buckets].item<int64_t>() != spec_.out_features ||
      !(steps > 0).all().item<bool>()) {
    return absl::InvalidArgumentError("tensor 'bucket_offsets' is not an increasing 0 .. rows");
  }
  return absl::OkStatus();
}

LinearFactory DaqTrainFactory(const DaqParams& params,
                              const std::vector<std::string>& quantized_roles,
                              const QuantNoiseOptions& noise) {
  return [params, quantized_roles, noise](const LinearSpec& spec) -> std::shared_ptr<Linear> {
    DaqLayout layout;
    const bool daq = DaqLayoutFor(params, spec, &layout);
    const bool quantized = daq && std::find(quantized_roles.begin(), quantized_roles.end(),
                                            layout.role) != quantized_roles.end();
    return std::make_shared<DaqTrainLinear>(spec, daq ? &layout : nullptr, quantized, noise);
  };
}

}  // namespace quantmt::compress
