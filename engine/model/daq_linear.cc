#include "model/daq_linear.h"

#include <ATen/record_function.h>

#include <algorithm>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "model/packed_product.h"
#include "model/daq_kernels.h"

namespace quantmt {
namespace {

const char* RoleName(LinearRole role) {
  switch (role) {
    case LinearRole::kAttention:
      return "attention";
    case LinearRole::kFeedForward:
      return "feed_forward";
    case LinearRole::kEmbedding:
      return "embedding";
    case LinearRole::kOutputProjection:
      return "output_projection";
  }
  return "?";
}

}  // namespace

absl::StatusOr<DaqKernel> ParseDaqKernel(const std::string& name) {
  if (name == "auto") return DaqKernel::kAuto;
  if (name == "decompress") return DaqKernel::kDecompress;
  if (name == "lookup") return DaqKernel::kLookup;
  return absl::InvalidArgumentError(
      absl::StrCat("unknown DAQ kernel '", name, "' (expected auto, decompress or lookup)"));
}

bool DaqLayoutFor(const DaqParams& params, const LinearSpec& spec, DaqLayout* layout) {
  const std::string role = RoleName(spec.role);
  const int block = params.BlockSize(role);
  if (!params.Quantizes(role) || block <= 0 || spec.in_features % block != 0) return false;
  layout->in_features = spec.in_features;
  layout->out_features = spec.out_features;
  layout->block = block;
  layout->buckets = std::min<int64_t>(params.buckets, spec.out_features);
  layout->centroids = params.centroids;
  layout->bits = params.bits;
  layout->int8_centroids = params.centroid_dtype == "int8";
  layout->role = role;
  return true;
}

DaqKernel ChooseDaqKernel(const DaqLayout& /*layout*/) {
  // Measured with quantmt-bench-daq (2 threads, 8-bit and 4-bit, 1 and 4
  // buckets, every layer shape of the default and reference models, 1-64
  // rows): the dense product over the decoded weight was faster in 92 of 96
  // cells, often by 10x or more; the lookup table won only four 4-bit cells
  // at 8 rows, by up to 1.4x (that dense product was LibTorch's; the
  // prepacked oneDNN one served now is 1.5-9x faster again at 8-64 rows). So
  // decompress; lookup stays available (QUANTMT_DAQ_KERNEL=lookup) where the
  // weights' RAM matters more than speed (its tables grow with the rows).
  return DaqKernel::kDecompress;
}

DaqLinear::DaqLinear(const DaqLayout& layout, bool with_bias)
    : layout_(layout), kernel_(ChooseDaqKernel(layout)) {
  const int64_t N = layout.buckets, K = layout.centroids;
  if (layout.int8_centroids) {
    centroids_ = register_buffer("centroids", torch::zeros({N, K, layout.block}, torch::kInt8));
    centroid_scales_ = register_parameter("centroid_scales", torch::ones({N}));
  } else {
    centroids_ = register_parameter("centroids", torch::zeros({N, K, layout.block}));
  }
  assignments_ = register_buffer(
      "assignments", torch::zeros({layout.out_features, layout.code_columns()}, torch::kUInt8));
  bucket_offsets_ =
      register_buffer("bucket_offsets", daq::EvenBucketOffsets(layout.out_features, N));
  if (with_bias) bias_ = register_parameter("bias", torch::zeros({layout.out_features}));
}

void DaqLinear::set_kernel(DaqKernel kernel) {
  kernel_ = kernel == DaqKernel::kAuto ? ChooseDaqKernel(layout_) : kernel;
  DropCaches();
}

void DaqLinear::DropCaches() {
  packed_.reset();
  weight_cache_ = torch::Tensor();
  centroid_cache_ = torch::Tensor();
  row_buckets_ = torch::Tensor();
}

torch::Tensor DaqLinear::FloatCentroids() const {
  if (layout_.int8_centroids) return daq::DequantizeCentroids(centroids_, centroid_scales_);
  return centroids_;
}

torch::Tensor DaqLinear::UnpackedCodes() const {
  if (layout_.bits == 4) return daq::UnpackNibbles(assignments_, layout_.blocks_per_row());
  return assignments_;
}

const torch::Tensor& DaqLinear::RowBucketIndex() {
  if (!row_buckets_.defined() || row_buckets_.device() != bucket_offsets_.device()) {
    row_buckets_ = daq::RowBuckets(bucket_offsets_, layout_.out_features);
  }
  return row_buckets_;
}

torch::Tensor DaqLinear::DecodedWeight(const torch::Tensor& like) {
  if (!weight_cache_.defined() || weight_cache_.device() != like.device() ||
      weight_cache_.scalar_type() != like.scalar_type()) {
    torch::NoGradGuard no_grad;
    weight_cache_ =
        daq::DecodeRows(FloatCentroids().to(like.scalar_type()), UnpackedCodes(), RowBucketIndex());
  }
  return weight_cache_;
}

torch::Tensor DaqLinear::DenseWeight() {
  torch::NoGradGuard no_grad;
  return daq::DecodeRows(FloatCentroids().to(torch::kFloat32), UnpackedCodes(), RowBucketIndex());
}

void DaqLinear::PrepareForInference() {
  torch::NoGradGuard no_grad;
  packed_.reset();
  RowBucketIndex();
  const torch::Tensor centroids = FloatCentroids();
  if (kernel_ == DaqKernel::kLookup && centroids.is_cpu() &&
      centroids.scalar_type() == torch::kFloat32) {
    centroid_cache_ = centroids.contiguous();
    return;
  }
  packed_ = PackFloatWeight(DecodedWeight(centroids), bias_);
  // The packed copy serves Forward, and EmbedRows decodes the rows it is
  // asked for: keeping the plain weight too would double the float RAM.
  if (packed_) weight_cache_ = torch::Tensor();
}

torch::Tensor DaqLinear::Forward(const torch::Tensor& input) {
  RECORD_FUNCTION("quantmt::daq_linear", std::vector<c10::IValue>());
  if (packed_ && PackedProductServes(input)) return PackedProduct(*packed_, input);
  if (kernel_ == DaqKernel::kLookup && input.is_cpu() && input.scalar_type() == torch::kFloat32) {
    if (!centroid_cache_.defined()) {
      torch::NoGradGuard no_grad;
      centroid_cache_ = FloatCentroids().to(torch::kFloat32).contiguous();
    }
    auto rows = input.reshape({-1, layout_.in_features});
    auto bias = bias_.defined() ? bias_.to(torch::kFloat32).contiguous() : bias_;
    auto output = daq::LookupLinear(rows, centroid_cache_, assignments_, bucket_offsets_,
                                   layout_.bits, layout_.out_features, bias);
    auto sizes = input.sizes().vec();
    sizes.back() = layout_.out_features;
    return output.view(sizes);
  }
  // The lookup kernel is CPU-only: elsewhere the weight is decompressed.
  // Not prepared, or an input the packed product does not serve (autograd).
  return DenseForward(input, DecodedWeight(input), bias_);
}

torch::Tensor DaqLinear::EmbedRows(const torch::Tensor& ids) {
  if (weight_cache_.defined()) return torch::embedding(weight_cache_, ids);
  torch::NoGradGuard no_grad;
  auto flat = ids.reshape({-1});
  auto codes = assignments_.index_select(0, flat);
  if (layout_.bits == 4) codes = daq::UnpackNibbles(codes, layout_.blocks_per_row());
  auto rows = daq::DecodeRows(FloatCentroids(), codes, RowBucketIndex().index_select(0, flat));
  auto sizes = ids.sizes().vec();
  sizes.push_back(layout_.in_features);
  return rows.view(sizes);
}

absl::Status DaqLinear::ValidateWeights() const {
  const int64_t N = layout_.buckets;
  auto offsets = bucket_offsets_.to(torch::kCPU, torch::kLong);
  const int64_t* o = offsets.data_ptr<int64_t>();
  if (o[0] != 0 || o[N] != layout_.out_features) {
    return absl::InvalidArgumentError(absl::StrCat("tensor 'bucket_offsets' must run from 0 to ",
                                                   layout_.out_features, " (the rows), got ", o[0],
                                                   " .. ", o[N]));
  }
  for (int64_t b = 0; b < N; ++b) {
    if (o[b + 1] <= o[b]) {
      return absl::InvalidArgumentError(
          absl::StrCat("tensor 'bucket_offsets' must increase strictly; bucket ", b, " is rows ",
                       o[b], " .. ", o[b + 1]));
    }
  }
  // int32: 256 centroids would wrap to 0 as a uint8 scalar.
  auto codes = UnpackedCodes().to(torch::kCPU, torch::kInt32);
  auto bad = codes.ge(layout_.centroids).nonzero();
  if (bad.size(0) > 0) {
    const int64_t row = bad[0][0].item<int64_t>(), block = bad[0][1].item<int64_t>();
    return absl::InvalidArgumentError(
        absl::StrCat("tensor 'assignments': code ", codes[row][block].item<int64_t>(), " at row ",
                     row, ", block ", block, " is out of range for ", layout_.centroids,
                     " centroids", layout_.bits == 4 ? " (4-bit codes)" : ""));
  }
  if (layout_.int8_centroids) {
    auto scales = centroid_scales_.to(torch::kCPU, torch::kFloat32);
    if (!torch::isfinite(scales).all().item<bool>() || !(scales > 0).all().item<bool>()) {
      return absl::InvalidArgumentError(
          "tensor 'centroid_scales': every scale must be finite and positive");
    }
  } else if (!torch::isfinite(centroids_.to(torch::kCPU, torch::kFloat32)).all().item<bool>()) {
    return absl::InvalidArgumentError("tensor 'centroids' holds a non-finite value");
  }
  return absl::OkStatus();
}

void DaqLinear::SetCodes(const torch::Tensor& centroids, const torch::Tensor& codes,
                        const torch::Tensor& offsets, torch::ScalarType scale_dtype) {
  torch::NoGradGuard no_grad;
  if (layout_.int8_centroids) {
    daq::Int8Centroids q = daq::QuantizeCentroidsInt8(centroids, scale_dtype);
    centroids_.copy_(q.values);
    centroid_scales_.copy_(q.scales);
  } else {
    centroids_.copy_(centroids);
  }
  auto cpu_codes = codes.to(torch::kCPU, torch::kUInt8);
  assignments_.copy_(layout_.bits == 4 ? daq::PackNibbles(cpu_codes) : cpu_codes);
  bucket_offsets_.copy_(offsets);
  DropCaches();
}

int64_t DaqLinear::ResidentBytes() const {
  int64_t bytes = 0;
  for (const auto& t : {centroids_, centroid_scales_, assignments_, bucket_offsets_, bias_,
                        weight_cache_, centroid_cache_, row_buckets_}) {
    if (t.defined()) bytes += static_cast<int64_t>(t.nbytes());
  }
  // The packed weight and bias, float32 (oneDNN may pad the layout a little).
  if (packed_) {
    bytes += static_cast<int64_t>(sizeof(float)) * layout_.out_features *
             (layout_.in_features + (bias_.defined() ? 1 : 0));
  }
  return bytes;
}

void DaqLinear::to(torch::Device device, torch::Dtype dtype, bool non_blocking) {
  DropCaches();
  for (auto& p : named_parameters(false)) p->set_data(p->to(device, dtype, non_blocking));
  for (auto& b : named_buffers(false)) {
    b->set_data(b->is_floating_point() ? b->to(device, dtype, non_blocking)
                                       : b->to(device, b->scalar_type(), non_blocking));
  }
}

void DaqLinear::to(torch::Dtype dtype, bool non_blocking) {
  to(centroids_.device(), dtype, non_blocking);
}

void DaqLinear::to(torch::Device device, bool non_blocking) {
  DropCaches();
  for (auto& p : named_parameters(false))
    p->set_data(p->to(device, p->scalar_type(), non_blocking));
  for (auto& b : named_buffers(false)) b->set_data(b->to(device, b->scalar_type(), non_blocking));
}

absl::StatusOr<LinearFactory> DaqLinearFactory(const QuantizationConfig& quantization,
                                               DaqKernel kernel) {
  ASSIGN_OR_RETURN(DaqParams params, ParseDaqParams(quantization.params_json, "config.json"));
  // Benchmarks and tests may force one path for every layer.
  if (const char* forced = std::getenv("QUANTMT_DAQ_KERNEL");
      forced != nullptr && kernel == DaqKernel::kAuto) {
    ASSIGN_OR_RETURN(kernel, ParseDaqKernel(forced));
  }
  return LinearFactory([params, kernel](const LinearSpec& spec) -> std::shared_ptr<Linear> {
    DaqLayout layout;
    if (!DaqLayoutFor(params, spec, &layout)) {
      return std::make_shared<FloatLinear>(spec.in_features, spec.out_features, spec.bias);
    }
    auto layer = std::make_shared<DaqLinear>(layout, spec.bias);
    layer->set_kernel(kernel);
    return layer;
  });
}

}  // namespace quantmt
