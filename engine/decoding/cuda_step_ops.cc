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
#error "the CUDA graph decoders need LibTorch 2.x (scaled_dot_product_attention)"
#endif

namespace quantmt {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Finds parameters by their checkpoint names; remembers the first missing one.
class ParameterTable {
 public:
  explicit ParameterTable(torch::nn::Module& model) : parameters_(model.named_parameters()) {}

  torch::Tensor Get(const std::string& name) {
    const torch::Tensor* found = parameters_.find(name);
    if (found == nullptr) {
      if (missing_.empty()) missing_ = name;
      return {};
    }
    return found->detach();
  }
  const std::string& missing() const { return missing_; }

 private:
  torch::OrderedDict<std::string, torch::Tensor> parameters_;
  std::string missing_;
};

// The table of Transformer::SinusoidTable: PE[p, 2i] = sin(p / 10000^(2i/d)),
// PE[p, 2i+1] = cos(p / 10000^(2i/d)), in float64 (Vaswani et al. 2017).
torch::Tensor SinusoidTable(int64_t rows, int64_t d) {
  auto position = torch::arange(rows, torch::kFloat64).unsqueeze(1);
  auto even = torch::arange(0, d, 2, torch::kFloat64);
  auto angle = position * torch::exp(even * (-std::log(10000.0) / d));
  auto table = torch::zeros({rows, d}, torch::kFloat64);
  table.slice(1, 0, d, 2).copy_(torch::sin(angle));
  table.slice(1, 1, d, 2).copy_(torch::cos(angle).narrow(1, 0, d / 2));
  return table;
}

absl::StatusOr<DecoderWeights> CollectDecoderWeightsOf(Transformer& model) {
  const ModelConfig& config = model.config();
  ParameterTable table(model);
  DecoderWeights weights;
  const std::string target_table =
      config.shared_embeddings ? "encoder.embed_tokens.weight" : "decoder.embed_tokens.weight";
  weights.embedding = table.Get(target_table);
  weights.output = config.tie_output_projection ? weights.embedding
                                                : table.Get("decoder.output_projection.weight");
  if (config.norm == NormPosition::kPre) {
    weights.final_norm = {table.Get("decoder.layer_norm.weight"),
                          table.Get("decoder.layer_norm.bias")};
  }
  if (config.positions == PositionEncoding::kLearned) {
    weights.positions = table.Get("decoder.embed_positions.weight");
  }
  std::vector<torch::Tensor> cross_kv_weights, cross_kv_biases;
  int64_t cross_kv_offset = 0;
  for (size_t i = 0; i < config.decoder_layers.size(); ++i) {
    const LayerConfig& layer = config.decoder_layers[i];
    const std::string prefix = "decoder.layers." + std::to_string(i) + ".";
    auto get = [&](const std::string& name) { return table.Get(prefix + name); };
    LayerWeights w;
    const int64_t attention_dim = layer.attention_dim > 0 ? layer.attention_dim : config.d_model;
    w.heads = layer.heads;
    w.head_dim = attention_dim / layer.heads;
    std::vector<torch::Tensor> qkv_weight = {get("self_attn.q_proj.weight"),
                                             get("self_attn.k_proj.weight"),
                                             get("self_attn.v_proj.weight")};
    std::vector<torch::Tensor> qkv_bias = {
        get("self_attn.q_proj.bias"), get("self_attn.k_proj.bias"), get("self_attn.v_proj.bias")};
    w.self_out_weight = get("self_attn.out_proj.weight");
    w.self_out_bias = get("self_attn.out_proj.bias");
    w.self_norm = {get("self_attn_layer_norm.weight"), get("self_attn_layer_norm.bias")};
    w.cross_q_weight = get("encoder_attn.q_proj.weight");
    w.cross_q_bias = get("encoder_attn.q_proj.bias");
    w.cross_out_weight = get("encoder_attn.out_proj.weight");
    w.cross_out_bias = get("encoder_attn.out_proj.bias");
    w.cross_norm = {get("encoder_attn_layer_norm.weight"), get("encoder_attn_layer_norm.bias")};
    w.fc1_weight = get("ffn.fc1.weight");
    w.fc1_bias = get("ffn.fc1.bias");
    w.fc2_weight = get("ffn.fc2.weight");
    w.fc2_bias = get("ffn.fc2.bias");
    w.ffn_norm = {get("final_layer_norm.weight"), get("final_layer_norm.bias")};
    cross_kv_weights.push_back(get("encoder_attn.k_proj.weight"));
    cross_kv_weights.push_back(get("encoder_attn.v_proj.weight"));
    cross_kv_biases.push_back(get("encoder_attn.k_proj.bias"));
    cross_kv_biases.push_back(get("encoder_attn.v_proj.bias"));
    if (!table.missing().empty()) break;
    w.qkv_weight = torch::cat(qkv_weight, 0);
    w.qkv_bias = torch::cat(qkv_bias, 0);
    w.cross_kv_offset = cross_kv_offset;
    cross_kv_offset += 2 * attention_dim;
    weights.layers.push_back(std::move(w));
  }
  if (!table.missing().empty()) {
    return absl::FailedPreconditionError(
        "CUDA graph decoding serves float checkpoints only (quantization scheme \"none\"): the "
        "model has no float parameter \"" +
        table.missing() + "\"");
  }
  weights.cross_kv_weight = torch::cat(cross_kv_weights, 0);
  weights.cross_kv_bias = torch::cat(cross_kv_biases, 0);
  if (config.positions == PositionEncoding::kSinusoidal) {
    const int64_t rows = std::max(config.max_source_positions, config.max_target_positions) + 1;
    weights.positions = SinusoidTable(rows, config.d_model).to(weights.embedding.options());
  }
  return weights;
}

}  // namespace

absl::StatusOr<DecoderWeights> CollectDecoderWeights(Transformer& model) {
  if (model.is_training()) {
    return absl::FailedPreconditionError(
        "CUDA graph decoding needs the model in eval mode (call eval() first)");
  }
  for (const auto& module : model.modules()) {
    auto* linear = dynamic_cast<Linear*>(module.get());
    if (linear != nullptr && dynamic_cast<FloatLinear*>(linear) == nullptr) {
      return absl::FailedPreconditionError(
          "CUDA graph decoding serves float checkpoints only; this model's quantization scheme "
          "is \"" +
          model.config().quantization.scheme + "\"");
    }
  }
  torch::NoGradGuard no_grad;
  ASSIGN_OR_RETURN(DecoderWeights weights, CollectDecoderWeightsOf(model));
  const torch::Tensor& table = weights.embedding;
  if (!table.is_cuda()) {
    return absl::FailedPreconditionError(
        "CUDA graph decoding needs the model on a CUDA device; it is on " + table.device().str() +
        " (move it with to(torch::kCUDA))");
  }
  const auto dtype = table.scalar_type();
  if (dtype != torch::kFloat32 && dtype != torch::kFloat16 && dtype != torch::kBFloat16) {
    return absl::FailedPreconditionError(
        std::string("CUDA graph decoding runs float32, float16 or bfloat16 weights, not ") +
        c10::toString(dtype));
  }
  // The fused weights were made on the default stream; a decoder's own
  // stream must not read them before they exist.
  torch::cuda::synchronize(table.device().index());
  return weights;
}

DecoderStepOps::DecoderStepOps(const ModelConfig& config, DecoderWeights weights)
    : config_(config),
      weights_(std::move(weights)),
      embed_scale_(config.scale_embeddings ? std::sqrt(config.d_model) : 1.0),
      pre_norm_(config.norm == NormPosition::kPre) {}

StepBuffers DecoderStepOps::Allocate(int64_t rows, int64_t sources, int64_t slots) const {
  const auto dtype = weights_.embedding.options();
  const auto ids = dtype.dtype(torch::kLong);
  StepBuffers b;
  b.tokens = torch::full({rows}, config_.bos_id, ids);
  b.positions = torch::zeros({rows}, ids);
  b.advance = torch::zeros({rows}, ids);
  b.min_length = torch::zeros({rows}, ids);
  b.slot_index = torch::arange(slots, ids);
  b.cross_mask = torch::zeros({rows, 1, 1, sources}, dtype);
  for (const LayerWeights& w : weights_.layers) {
    b.self_keys.push_back(torch::zeros({rows, w.heads, slots, w.head_dim}, dtype));
    b.self_values.push_back(torch::zeros_like(b.self_keys.back()));
    b.cross_keys.push_back(torch::zeros({rows, w.heads, sources, w.head_dim}, dtype));
    b.cross_values.push_back(torch::zeros_like(b.cross_keys.back()));
  }
  b.best_tokens = torch::zeros({rows}, ids);
  b.best_log_probs = torch::zeros({rows}, dtype.dtype(torch::kFloat));
  b.max_position = slots - 1;
  return b;
}

torch::Tensor DecoderStepOps::LayerNorm(const torch::Tensor& x, const NormWeights& norm) const {
  return at::layer_norm(x, {static_cast<int64_t>(config_.d_model)}, norm.weight, norm.bias,
                        config_.layer_norm_eps);
}

torch::Tensor DecoderStepOps::FeedForward(const torch::Tensor& x, const LayerWeights& w) const {
  torch::Tensor hidden;
  switch (config_.activation) {
    case Activation::kRelu:
      // Bias and ReLU in the GEMM's epilogue (cuBLASLt): one kernel.
      hidden = at::_addmm_activation(w.fc1_bias, x, w.fc1_weight.t());
      break;
    case Activation::kGelu:
      hidden = torch::gelu(at::linear(x, w.fc1_weight, w.fc1_bias));
      break;
    case Activation::kSilu:
      hidden = torch::silu(at::linear(x, w.fc1_weight, w.fc1_bias));
      break;
  }
  return at::linear(hidden, w.fc2_weight, w.fc2_bias);
}

void DecoderStepOps::ProjectCross(const torch::Tensor& memory,
                                  const std::vector<torch::Tensor>& keys,
                                  const std::vector<torch::Tensor>& values) const {
  const int64_t rows = memory.size(0), length = memory.size(1);
  // Every layer's cross-attention keys and values in one product.
  auto projected = at::linear(memory, weights_.cross_kv_weight, weights_.cross_kv_bias);
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const LayerWeights& w = weights_.layers[l];
    const int64_t attention_dim = w.heads * w.head_dim;
    auto split = [&](int64_t offset) {
      return projected.narrow(2, offset, attention_dim)
          .view({rows, length, w.heads, w.head_dim})
          .transpose(1, 2);
    };
    keys[l].copy_(split(w.cross_kv_offset));
    values[l].copy_(split(w.cross_kv_offset + attention_dim));
  }
}

void DecoderStepOps::Step(StepBuffers& b) const {
  const int64_t rows = b.tokens.size(0), slots = b.slot_index.size(0);
  auto x = torch::embedding(weights_.embedding, b.tokens) * embed_scale_ +
           torch::embedding(weights_.positions, b.positions);  // [R, d]
  // Slots a row has not written yet are hidden: -inf above its position.
  auto unfilled = b.slot_index.unsqueeze(0) > b.positions.unsqueeze(1);
  auto self_mask = torch::zeros({rows, slots}, x.options())
                       .masked_fill(unfilled, kNegInf)
                       .view({rows, 1, 1, slots});
  auto write_slot = b.positions.view({rows, 1, 1, 1});
  auto before = [&](const torch::Tensor& h, const NormWeights& norm) {
    return pre_norm_ ? LayerNorm(h, norm) : h;
  };
  auto after = [&](const torch::Tensor& h, const NormWeights& norm) {
    return pre_norm_ ? h : LayerNorm(h, norm);
  };
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const LayerWeights& w = weights_.layers[l];
    const int64_t heads = w.heads, head_dim = w.head_dim, attention_dim = heads * head_dim;
    // Self-attention: write this step's key and value at each row's slot,
    // attend over every slot with the mask.
    auto qkv = at::linear(before(x, w.self_norm), w.qkv_weight, w.qkv_bias);  // [R, 3A]
    auto split = [&](int64_t part) {
      return qkv.narrow(1, part * attention_dim, attention_dim).view({rows, heads, 1, head_dim});
    };
    auto index = write_slot.expand({rows, heads, 1, head_dim});
    b.self_keys[l].scatter_(2, index, split(1));
    b.self_values[l].scatter_(2, index, split(2));
    auto attended =
        at::scaled_dot_product_attention(split(0), b.self_keys[l], b.self_values[l], self_mask);
    x = after(
        x + at::linear(attended.reshape({rows, attention_dim}), w.self_out_weight, w.self_out_bias),
        w.self_norm);
    // Cross-attention over the encoder output projected once per sentence.
    auto q = at::linear(before(x, w.cross_norm), w.cross_q_weight, w.cross_q_bias)
                 .view({rows, heads, 1, head_dim});
    attended =
        at::scaled_dot_product_attention(q, b.cross_keys[l], b.cross_values[l], b.cross_mask);
    x = after(x + at::linear(attended.reshape({rows, attention_dim}), w.cross_out_weight,
                             w.cross_out_bias),
              w.cross_norm);
    x = after(x + FeedForward(before(x, w.ffn_norm), w), w.ffn_norm);
  }
  if (pre_norm_) x = LayerNorm(x, weights_.final_norm);
  auto logits = at::linear(x, weights_.output).to(torch::kFloat);  // [R, V]
  // As StepDecoder: normalize over the whole vocabulary, then forbid
  // end-of-sentence below min_length, then take the best.
  auto normalizer = logits.logsumexp(1);
  logits.select(1, config_.eos_id).masked_fill_(b.positions < b.min_length, kNegInf);
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
