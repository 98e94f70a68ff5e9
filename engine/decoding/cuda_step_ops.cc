// Compiled only when LibTorch has CUDA (QUANTMT_WITH_CUDA).
#include "decoding/cuda_step_ops.h"

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/version.h>

#include <cmath>
#include <limits>
#include <string>
#include <tuple>
#include <utility>

#if TORCH_VERSION_MAJOR < 2
#error "the CUDA graph decoder needs LibTorch 2.x (scaled_dot_product_attention)"
#endif

namespace quantmt {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

}  // namespace

absl::StatusOr<DecoderStepOps> DecoderStepOps::Create(Transformer& model) {
  if (model.is_training()) {
    return absl::FailedPreconditionError(
        "CUDA graph decoding needs the model in eval mode (call eval() first)");
  }
  for (const auto& module : model.modules()) {
    auto* linear = dynamic_cast<Linear*>(module.get());
    if (linear != nullptr && dynamic_cast<FloatLinear*>(linear) == nullptr) {
      return absl::FailedPreconditionError(
          "CUDA graph decoding serves float layers only; this model's quantization scheme "
          "is \"" +
          model.config().quantization.scheme + "\" (a GPU model is placed as its float twin)");
    }
  }
  const torch::Tensor weight = model.parameters().front();
  if (!weight.is_cuda()) {
    return absl::FailedPreconditionError(
        "CUDA graph decoding needs the model on a CUDA device; it is on " + weight.device().str() +
        " (move it with to(torch::kCUDA))");
  }
  const auto dtype = weight.scalar_type();
  if (dtype != torch::kFloat32 && dtype != torch::kFloat16 && dtype != torch::kBFloat16) {
    return absl::FailedPreconditionError(
        std::string("CUDA graph decoding runs float32, float16 or bfloat16 weights, not ") +
        c10::toString(dtype));
  }
  // Prepared weights (stacked projections) were made on the default stream;
  // a decoder's own stream must not read them before they exist.
  torch::cuda::synchronize(weight.device().index());
  return DecoderStepOps(model, weight.options());
}

DecoderStepOps::DecoderStepOps(Transformer& model, torch::TensorOptions options)
    : model_(&model), options_(options), device_(options.device()) {}

int64_t DecoderStepOps::cache_bytes_per_position() const {
  const ModelConfig& config = model_->config();
  int64_t bytes = 0;
  for (const LayerConfig& layer : config.decoder_layers) {
    const int64_t attention_dim = layer.attention_dim > 0 ? layer.attention_dim : config.d_model;
    bytes += 2 * attention_dim * static_cast<int64_t>(options_.dtype().itemsize());
  }
  return bytes;
}

StepBuffers DecoderStepOps::Allocate(int64_t rows, int64_t sources, int64_t slots) const {
  const ModelConfig& config = model_->config();
  const auto ids = options_.dtype(torch::kLong);
  StepBuffers b;
  b.tokens = torch::full({rows}, config.bos_id, ids);
  b.positions = torch::zeros({rows}, ids);
  b.advance = torch::zeros({rows}, ids);
  b.min_length = torch::zeros({rows}, ids);
  b.cross_mask = torch::zeros({rows, 1, 1, sources}, options_);
  for (const LayerConfig& layer : config.decoder_layers) {
    const int64_t attention_dim = layer.attention_dim > 0 ? layer.attention_dim : config.d_model;
    const int64_t head_dim = attention_dim / layer.heads;
    b.self_keys.push_back(torch::zeros({rows, layer.heads, slots, head_dim}, options_));
    b.self_values.push_back(torch::zeros_like(b.self_keys.back()));
    b.cross_keys.push_back(torch::zeros({rows, layer.heads, sources, head_dim}, options_));
    b.cross_values.push_back(torch::zeros_like(b.cross_keys.back()));
  }
  b.best_tokens = torch::zeros({rows}, ids);
  b.best_log_probs = torch::zeros({rows}, options_.dtype(torch::kFloat));
  b.max_position = slots - 1;
  return b;
}

void DecoderStepOps::ProjectCross(const torch::Tensor& memory,
                                  const std::vector<torch::Tensor>& keys,
                                  const std::vector<torch::Tensor>& values) const {
  std::vector<KeyValueCache> projected = model_->ProjectMemory(memory);
  for (size_t l = 0; l < projected.size(); ++l) {
    keys[l].copy_(projected[l].keys);
    values[l].copy_(projected[l].values);
  }
}

void DecoderStepOps::Step(StepBuffers& b) const {
  // The layers see the buffers as their caches: views, written in place.
  std::vector<DecoderLayerCache> layers(b.self_keys.size());
  for (size_t l = 0; l < layers.size(); ++l) {
    layers[l].self_attention = {b.self_keys[l], b.self_values[l], b.self_keys[l].size(2)};
    layers[l].cross_attention = {b.cross_keys[l], b.cross_values[l], b.cross_keys[l].size(2)};
  }
  auto logits =
      model_->DecodeStepInPlace(b.tokens, b.positions, &layers, b.cross_mask).to(torch::kFloat);
  // As StepDecoder: normalize over the whole vocabulary, then forbid
  // end-of-sentence below min_length, then take the best.
  auto normalizer = logits.logsumexp(1);
  logits.select(1, model_->config().eos_id).masked_fill_(b.positions < b.min_length, kNegInf);
  auto best = logits.max(1);
  if (b.top_tokens.defined()) {
    auto top = logits.topk(b.top_tokens.size(1), 1);
    b.top_log_probs.copy_(std::get<0>(top) - normalizer.unsqueeze(1));
    b.top_tokens.copy_(std::get<1>(top));
  }
  b.best_log_probs.copy_(std::get<0>(best) - normalizer);
  b.best_tokens.copy_(std::get<1>(best));
  b.tokens.copy_(std::get<1>(best));
  b.positions.add_(b.advance).clamp_max_(b.max_position);
}

std::unique_ptr<at::cuda::CUDAGraph> CaptureGraph(at::cuda::CUDAStream stream, GraphPool pool,
                                                  const std::function<void()>& ops) {
  ops();
  stream.synchronize();
  auto graph = std::make_unique<at::cuda::CUDAGraph>();
  graph->capture_begin(pool, cudaStreamCaptureModeThreadLocal);
  try {
    ops();
  } catch (...) {
    try {
      graph->capture_end();
    } catch (...) {
    }
    throw;
  }
  graph->capture_end();
  return graph;
}

}  // namespace quantmt
