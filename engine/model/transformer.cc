#include "model/transformer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "kernels/layer_norm_cpu.h"

namespace quantmt {
namespace {

torch::nn::LayerNorm MakeLayerNorm(int64_t d_model, float eps) {
  return torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model}).eps(eps));
}

int64_t AttentionDim(const ModelConfig& config, const LayerConfig& layer) {
  return layer.attention_dim > 0 ? layer.attention_dim : config.d_model;
}

// Additive mask that hides later positions: [T, T], -inf above the diagonal.
torch::Tensor CausalMask(int64_t length, const torch::TensorOptions& options) {
  return torch::full({length, length}, -std::numeric_limits<float>::infinity(), options).triu(1);
}

torch::Tensor Dropout(const torch::Tensor& x, double p, bool training) {
  return (training && p > 0) ? torch::dropout(x, p, true) : x;
}

// norm(x + residual), or norm(x) when residual is undefined. Inference on
// the CPU in float32 runs the fused kernel (one pass per row, no sum
// buffer); everything else (a shape LayerNorm would refuse included),
// LibTorch's ops.
torch::Tensor AddAndNormalize(const torch::Tensor& x, const torch::Tensor& residual,
                              torch::nn::LayerNorm& norm) {
  auto on_cpu_float = [](const torch::Tensor& t) {
    return t.is_cpu() && t.scalar_type() == torch::kFloat32 && t.is_contiguous();
  };
  const auto& options = norm->options;
  const bool fused =
      !torch::GradMode::is_enabled() && on_cpu_float(x) &&
      (!residual.defined() || (on_cpu_float(residual) && residual.sizes() == x.sizes())) &&
      options.normalized_shape().size() == 1 && x.dim() > 0 &&
      x.size(-1) == options.normalized_shape()[0] && options.elementwise_affine() &&
      on_cpu_float(norm->weight) && on_cpu_float(norm->bias);
  if (!fused) return norm(residual.defined() ? x + residual : x);
  const int64_t cols = options.normalized_shape()[0];
  auto out = torch::empty_like(x);
  kernels::AddLayerNorm(
      x.data_ptr<float>(), residual.defined() ? residual.data_ptr<float>() : nullptr,
      norm->weight.data_ptr<float>(), norm->bias.data_ptr<float>(), x.numel() / cols, cols,
      static_cast<float>(options.eps()), out.data_ptr<float>(), at::get_num_threads());
  return out;
}

// One residual sub-layer: pre-norm computes x + f(norm(x)), post-norm
// norm(x + f(x)); dropout on f's output while training.
template <typename SubLayer>
torch::Tensor Residual(const torch::Tensor& x, torch::nn::LayerNorm& norm, bool pre_norm,
                       double dropout, bool training, SubLayer&& sublayer) {
  if (pre_norm) return x + Dropout(sublayer(AddAndNormalize(x, {}, norm)), dropout, training);
  return AddAndNormalize(x, Dropout(sublayer(x), dropout, training), norm);
}

}  // namespace

// ---------------------------------------------------------------- FeedForward

FeedForward::FeedForward(int64_t d_model, int64_t ffn_dim, Activation activation,
                         const LinearFactory& make_linear)
    : activation_(activation) {
  fc1_ = register_module("fc1", make_linear({d_model, ffn_dim, true, LinearRole::kFeedForward}));
  fc2_ = register_module("fc2", make_linear({ffn_dim, d_model, true, LinearRole::kFeedForward}));
}

torch::Tensor FeedForward::Forward(const torch::Tensor& x, double activation_dropout) {
  torch::Tensor h;
  switch (activation_) {
    case Activation::kRelu:
      h = fc1_->ForwardRelu(x);
      break;
    case Activation::kGelu:
      h = torch::gelu(fc1_->Forward(x));
      break;
    case Activation::kSilu:
      h = torch::silu(fc1_->Forward(x));
      break;
  }
  return fc2_->Forward(Dropout(h, activation_dropout, is_training()));
}

// --------------------------------------------------------------- EncoderLayer

EncoderLayer::EncoderLayer(const ModelConfig& config, const LayerConfig& layer,
                           const LinearFactory& make_linear)
    : pre_norm_(config.norm == NormPosition::kPre) {
  self_attn_ = register_module(
      "self_attn", std::make_shared<MultiHeadAttention>(config.d_model, AttentionDim(config, layer),
                                                        layer.heads, make_linear));
  self_attn_layer_norm_ =
      register_module("self_attn_layer_norm", MakeLayerNorm(config.d_model, config.layer_norm_eps));
  ffn_ = register_module("ffn", std::make_shared<FeedForward>(config.d_model, layer.ffn_dim,
                                                              config.activation, make_linear));
  final_layer_norm_ =
      register_module("final_layer_norm", MakeLayerNorm(config.d_model, config.layer_norm_eps));
}

torch::Tensor EncoderLayer::Forward(const torch::Tensor& x, const torch::Tensor& mask,
                                    const DropoutConfig& dropout) {
  const bool training = is_training();
  auto y = Residual(
      x, self_attn_layer_norm_, pre_norm_, dropout.residual, training,
      [&](const torch::Tensor& h) { return self_attn_->Forward(h, h, mask, dropout.attention); });
  return Residual(y, final_layer_norm_, pre_norm_, dropout.residual, training,
                  [&](const torch::Tensor& h) { return ffn_->Forward(h, dropout.activation); });
}

// --------------------------------------------------------------- DecoderLayer

DecoderLayer::DecoderLayer(const ModelConfig& config, const LayerConfig& layer,
                           const LinearFactory& make_linear)
    : pre_norm_(config.norm == NormPosition::kPre) {
  const int64_t attention_dim = AttentionDim(config, layer);
  self_attn_ =
      register_module("self_attn", std::make_shared<MultiHeadAttention>(
                                       config.d_model, attention_dim, layer.heads, make_linear));
  self_attn_layer_norm_ =
      register_module("self_attn_layer_norm", MakeLayerNorm(config.d_model, config.layer_norm_eps));
  encoder_attn_ = register_module("encoder_attn", std::make_shared<MultiHeadAttention>(
                                                      config.d_model, attention_dim, layer.heads,
                                                      make_linear, AttentionKind::kCross));
  encoder_attn_layer_norm_ = register_module("encoder_attn_layer_norm",
                                             MakeLayerNorm(config.d_model, config.layer_norm_eps));
  ffn_ = register_module("ffn", std::make_shared<FeedForward>(config.d_model, layer.ffn_dim,
                                                              config.activation, make_linear));
  final_layer_norm_ =
      register_module("final_layer_norm", MakeLayerNorm(config.d_model, config.layer_norm_eps));
}

torch::Tensor DecoderLayer::FeedForwardBlock(const torch::Tensor& x, double residual_dropout,
                                             double activation_dropout) {
  return Residual(x, final_layer_norm_, pre_norm_, residual_dropout, is_training(),
                  [&](const torch::Tensor& h) { return ffn_->Forward(h, activation_dropout); });
}

torch::Tensor DecoderLayer::Forward(const torch::Tensor& x, const torch::Tensor& memory,
                                    const torch::Tensor& causal_mask,
                                    const torch::Tensor& memory_mask,
                                    const DropoutConfig& dropout) {
  const bool training = is_training();
  auto y = Residual(x, self_attn_layer_norm_, pre_norm_, dropout.residual, training,
                    [&](const torch::Tensor& h) {
                      return self_attn_->Forward(h, h, causal_mask, dropout.attention);
                    });
  auto z = Residual(y, encoder_attn_layer_norm_, pre_norm_, dropout.residual, training,
                    [&](const torch::Tensor& h) {
                      return encoder_attn_->Forward(h, memory, memory_mask, dropout.attention);
                    });
  return FeedForwardBlock(z, dropout.residual, dropout.activation);
}

torch::Tensor DecoderLayer::ForwardStep(const torch::Tensor& x, DecoderLayerCache* cache,
                                        const torch::Tensor& memory_mask,
                                        const StepPositions& step) {
  auto y = Residual(x, self_attn_layer_norm_, pre_norm_, 0.0, false, [&](const torch::Tensor& h) {
    return self_attn_->ForwardIncremental(h, &cache->self_attention, step);
  });
  auto z =
      Residual(y, encoder_attn_layer_norm_, pre_norm_, 0.0, false, [&](const torch::Tensor& h) {
        return encoder_attn_->ForwardCached(h, cache->cross_attention, memory_mask);
      });
  return FeedForwardBlock(z, 0.0, 0.0);
}

KeyValueCache DecoderLayer::ProjectMemory(const torch::Tensor& memory) {
  return encoder_attn_->ProjectKeyValue(memory);
}

// --------------------------------------------------------------- DecoderState

namespace {

// Pads an additive mask [B, 1, 1, S] to `length` with -inf.
torch::Tensor PadMask(const torch::Tensor& mask, int64_t length) {
  if (mask.size(3) == length) return mask;
  auto padded = torch::full({mask.size(0), 1, 1, length}, -std::numeric_limits<float>::infinity(),
                            mask.options());
  padded.narrow(3, 0, mask.size(3)).copy_(mask);
  return padded;
}

// A self-attention cache of `rows` rows with no slots filled.
KeyValueCache EmptyCacheLike(const KeyValueCache& like, int64_t rows) {
  KeyValueCache cache;
  cache.keys = torch::zeros({rows, like.keys.size(1), 0, like.keys.size(3)}, like.keys.options());
  cache.values = torch::zeros_like(cache.keys);
  return cache;
}

}  // namespace

void DecoderState::Select(const std::vector<int64_t>& rows) {
  std::vector<int64_t> kept_positions, kept_lengths;
  int64_t source_length = 0, target_length = 0;
  for (int64_t row : rows) {
    kept_positions.push_back(positions[row]);
    kept_lengths.push_back(source_lengths[row]);
    source_length = std::max(source_length, source_lengths[row]);
    target_length = std::max(target_length, positions[row]);
  }
  auto index = torch::tensor(rows, torch::kLong).to(memory_mask.device());
  for (auto& layer : layers) {
    layer.self_attention.Select(index);
    layer.cross_attention.Select(index, source_length);
  }
  memory_mask =
      memory_mask.narrow(3, 0, std::min(source_length, memory_mask.size(3))).index_select(0, index);
  positions.swap(kept_positions);
  source_lengths.swap(kept_lengths);
}

void DecoderState::Append(DecoderState other) {
  if (other.batch_size() == 0) return;
  if (batch_size() == 0) {
    *this = std::move(other);
    return;
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    // Rows that have not stepped yet have no self-attention cache: give
    // them empty (zero, masked) slots so both sides have all their rows.
    KeyValueCache& mine = layers[i].self_attention;
    KeyValueCache& theirs = other.layers[i].self_attention;
    if (mine.keys.defined() && !theirs.keys.defined()) {
      theirs = EmptyCacheLike(mine, other.batch_size());
    } else if (!mine.keys.defined() && theirs.keys.defined()) {
      mine = EmptyCacheLike(theirs, batch_size());
    }
    mine.Append(theirs);
    layers[i].cross_attention.Append(other.layers[i].cross_attention);
  }
  const int64_t length = std::max(memory_mask.size(3), other.memory_mask.size(3));
  memory_mask = torch::cat({PadMask(memory_mask, length), PadMask(other.memory_mask, length)}, 0);
  positions.insert(positions.end(), other.positions.begin(), other.positions.end());
  source_lengths.insert(source_lengths.end(), other.source_lengths.begin(),
                        other.source_lengths.end());
  capacity_limit = std::max(capacity_limit, other.capacity_limit);
}

int64_t DecoderState::cache_bytes() const {
  int64_t bytes = 0;
  for (const auto& layer : layers) {
    bytes += layer.self_attention.bytes() + layer.cross_attention.bytes();
  }
  return bytes;
}

// ---------------------------------------------------------------- Transformer

absl::StatusOr<std::shared_ptr<Transformer>> Transformer::Create(const ModelConfig& config) {
  ASSIGN_OR_RETURN(LinearFactory make_linear, LinearFactoryFor(config.quantization));
  return Create(config, make_linear);
}

absl::StatusOr<std::shared_ptr<Transformer>> Transformer::Create(const ModelConfig& config,
                                                                 const LinearFactory& make_linear) {
  RETURN_IF_ERROR(ValidateModelConfig(config, "model config"));
  return std::shared_ptr<Transformer>(new Transformer(config, make_linear));
}

Transformer::Transformer(const ModelConfig& config, const LinearFactory& make_linear)
    : config_(config), embed_scale_(config.scale_embeddings ? std::sqrt(config.d_model) : 1.0) {
  const int64_t d = config.d_model;
  encoder_ = register_module("encoder", std::make_shared<torch::nn::Module>());
  decoder_ = register_module("decoder", std::make_shared<torch::nn::Module>());

  // Embeddings start at N(0, d^-1/2) with a zero padding row: with the
  // sqrt(d) scale this gives unit-variance inputs.
  auto initialize_embedding = [&](torch::Tensor& weight) {
    torch::NoGradGuard no_grad;
    weight.normal_(0.0, std::pow(static_cast<double>(d), -0.5));
    weight[config.pad_id].zero_();
  };
  // Token tables are Linear layers of the model's precision ([vocab, d], the
  // layout of the tied output projection): EmbedRows looks rows up.
  auto make_token_table = [&](int64_t vocab) {
    std::shared_ptr<Linear> table = make_linear({d, vocab, false, LinearRole::kEmbedding});
    if (auto* float_table = dynamic_cast<FloatLinear*>(table.get())) {
      initialize_embedding(float_table->mutable_weight());
    }
    return table;
  };
  auto make_position_table = [&](int64_t positions) {
    torch::nn::Embedding table(positions, d);
    initialize_embedding(table->weight);
    return table;
  };
  encoder_embed_ =
      encoder_->register_module("embed_tokens", make_token_table(config.source_vocab_size));
  if (!config.shared_embeddings) {
    decoder_embed_ =
        decoder_->register_module("embed_tokens", make_token_table(config.target_vocab_size));
  }
  if (config.positions == PositionEncoding::kLearned) {
    encoder_positions_ = encoder_->register_module(
        "embed_positions", make_position_table(config.max_source_positions));
    decoder_positions_ = decoder_->register_module(
        "embed_positions", make_position_table(config.max_target_positions));
  }

  auto encoder_layers = encoder_->register_module("layers", torch::nn::ModuleList());
  for (const LayerConfig& layer : config.encoder_layers) {
    encoder_layers_.push_back(std::make_shared<EncoderLayer>(config, layer, make_linear));
    encoder_layers->push_back(encoder_layers_.back());
  }
  auto decoder_layers = decoder_->register_module("layers", torch::nn::ModuleList());
  for (const LayerConfig& layer : config.decoder_layers) {
    decoder_layers_.push_back(std::make_shared<DecoderLayer>(config, layer, make_linear));
    decoder_layers->push_back(decoder_layers_.back());
  }
  // Pre-norm stacks end with a LayerNorm; post-norm layers already end normalized.
  if (config.norm == NormPosition::kPre) {
    encoder_norm_ =
        encoder_->register_module("layer_norm", MakeLayerNorm(d, config.layer_norm_eps));
    decoder_norm_ =
        decoder_->register_module("layer_norm", MakeLayerNorm(d, config.layer_norm_eps));
  }
  if (!config.tie_output_projection) {
    output_projection_ = decoder_->register_module(
        "output_projection",
        make_linear({d, config.target_vocab_size, false, LinearRole::kOutputProjection}));
  }
  if (config.positions == PositionEncoding::kSinusoidal) {
    // PE[p, 2i] = sin(p / 10000^(2i/d)), PE[p, 2i+1] = cos(p / 10000^(2i/d))
    // (Vaswani et al. 2017), computed in float64 for accuracy.
    const int64_t rows = std::max(config.max_source_positions, config.max_target_positions) + 1;
    auto position = torch::arange(rows, torch::kFloat64).unsqueeze(1);
    auto even = torch::arange(0, d, 2, torch::kFloat64);
    auto angle = position * torch::exp(even * (-std::log(10000.0) / d));
    sinusoid_table_ = torch::zeros({rows, d}, torch::kFloat64);
    sinusoid_table_.index_put_({torch::indexing::Slice(), torch::indexing::Slice(0, d, 2)},
                               torch::sin(angle));
    sinusoid_table_.index_put_({torch::indexing::Slice(), torch::indexing::Slice(1, d, 2)},
                               torch::cos(angle).narrow(1, 0, d / 2));
  }
}

Linear& Transformer::target_embedding() const {
  return config_.shared_embeddings ? *encoder_embed_ : *decoder_embed_;
}

torch::Tensor Transformer::SinusoidTable(const torch::Tensor& like) const {
  MutexLock lock(&sinusoid_mutex_);
  if (!sinusoid_cache_.defined() || sinusoid_cache_.device() != like.device() ||
      sinusoid_cache_.dtype() != like.dtype()) {
    sinusoid_cache_ = sinusoid_table_.to(like.options());
  }
  return sinusoid_cache_;
}

torch::Tensor Transformer::Embed(const torch::Tensor& ids, Linear& table,
                                 const torch::nn::Embedding& learned_positions,
                                 int64_t first_position) {
  auto x = table.EmbedRows(ids) * embed_scale_;
  const int64_t length = ids.size(1);
  if (learned_positions) {
    auto positions = torch::arange(first_position, first_position + length,
                                   torch::TensorOptions().dtype(torch::kLong).device(ids.device()));
    x = x + torch::embedding(learned_positions->weight, positions).unsqueeze(0);
  } else {
    x = x + SinusoidTable(x).narrow(0, first_position, length).unsqueeze(0);
  }
  return Dropout(x, dropout_.residual, is_training());
}

torch::Tensor Transformer::EmbedAt(const torch::Tensor& ids, Linear& table,
                                   const torch::nn::Embedding& learned_positions,
                                   const torch::Tensor& positions) {
  auto x = table.EmbedRows(ids) * embed_scale_;
  if (learned_positions) {
    return x + torch::embedding(learned_positions->weight, positions).unsqueeze(1);
  }
  return x + SinusoidTable(x).index_select(0, positions).unsqueeze(1);
}

torch::Tensor Transformer::OutputLogits(const torch::Tensor& hidden) {
  auto h = decoder_norm_ ? decoder_norm_(hidden) : hidden;
  if (output_projection_) return output_projection_->Forward(h);
  return target_embedding().Forward(h);
}

EncoderOutput Transformer::Encode(const torch::Tensor& source_ids) {
  EncoderOutput out;
  auto x = Embed(source_ids, *encoder_embed_, encoder_positions_, 0);
  out.memory_mask =
      torch::zeros({source_ids.size(0), 1, 1, source_ids.size(1)}, x.options())
          .masked_fill(
              source_ids.eq(config_.pad_id).view({source_ids.size(0), 1, 1, source_ids.size(1)}),
              -std::numeric_limits<float>::infinity());
  for (auto& layer : encoder_layers_) x = layer->Forward(x, out.memory_mask, dropout_);
  out.memory = encoder_norm_ ? encoder_norm_(x) : x;
  return out;
}

torch::Tensor Transformer::DecodeFull(const torch::Tensor& target_in,
                                      const EncoderOutput& encoded) {
  auto x = Embed(target_in, target_embedding(), decoder_positions_, 0);
  auto causal = CausalMask(target_in.size(1), x.options());
  for (auto& layer : decoder_layers_) {
    x = layer->Forward(x, encoded.memory, causal, encoded.memory_mask, dropout_);
  }
  return OutputLogits(x);
}

torch::Tensor Transformer::Forward(const torch::Tensor& source_ids,
                                   const torch::Tensor& target_in) {
  return DecodeFull(target_in, Encode(source_ids));
}

DecoderState Transformer::StartDecoding(const EncoderOutput& encoded) {
  DecoderState state;
  state.memory_mask = encoded.memory_mask;
  const int64_t batch = encoded.memory_mask.size(0);
  state.positions.assign(batch, 0);
  auto lengths = encoded.memory_mask.eq(0).sum(-1).view({batch}).to(torch::kCPU);
  for (int64_t i = 0; i < batch; ++i) state.source_lengths.push_back(lengths[i].item<int64_t>());
  std::vector<KeyValueCache> cross = ProjectMemory(encoded.memory);
  state.layers.resize(decoder_layers_.size());
  for (size_t i = 0; i < decoder_layers_.size(); ++i) {
    state.layers[i].cross_attention = std::move(cross[i]);
  }
  return state;
}

std::vector<KeyValueCache> Transformer::ProjectMemory(const torch::Tensor& memory) {
  std::vector<KeyValueCache> cross;
  for (auto& layer : decoder_layers_) cross.push_back(layer->ProjectMemory(memory));
  return cross;
}

torch::Tensor Transformer::DecodeStep(const torch::Tensor& tokens, DecoderState* state) {
  const auto [lowest, highest] =
      std::minmax_element(state->positions.begin(), state->positions.end());
  torch::Tensor logits;
  if (*lowest == *highest) {
    // Every row at the same position (static batches): no mask, one slot.
    StepPositions step;
    step.uniform = *lowest;
    step.length = *highest + 1;
    step.capacity_limit = state->capacity_limit;
    auto x = Embed(tokens.unsqueeze(1), target_embedding(), decoder_positions_, step.uniform);
    for (size_t i = 0; i < decoder_layers_.size(); ++i) {
      x = decoder_layers_[i]->ForwardStep(x, &state->layers[i], state->memory_mask, step);
    }
    logits = OutputLogits(x).squeeze(1);
  } else {
    auto positions = torch::tensor(state->positions, torch::kLong).to(tokens.device());
    logits = DecodeStepAt(tokens, positions, *highest + 1, state->capacity_limit, &state->layers,
                          state->memory_mask);
  }
  for (int64_t& position : state->positions) position += 1;
  return logits;
}

torch::Tensor Transformer::DecodeStepInPlace(const torch::Tensor& tokens,
                                             const torch::Tensor& positions,
                                             std::vector<DecoderLayerCache>* layers,
                                             const torch::Tensor& memory_mask) {
  const int64_t slots = layers->front().self_attention.keys.size(2);
  return DecodeStepAt(tokens, positions, slots, slots, layers, memory_mask);
}

torch::Tensor Transformer::DecodeStepAt(const torch::Tensor& tokens, const torch::Tensor& positions,
                                        int64_t length, int64_t capacity_limit,
                                        std::vector<DecoderLayerCache>* layers,
                                        const torch::Tensor& memory_mask) {
  const int64_t rows = tokens.size(0);
  StepPositions step;
  step.positions = positions;
  step.length = length;
  step.capacity_limit = capacity_limit;
  auto x = EmbedAt(tokens.unsqueeze(1), target_embedding(), decoder_positions_, positions);
  // Slots a row has not written yet are hidden: -inf above its position.
  auto unfilled = torch::arange(length, positions.options()).unsqueeze(0) > positions.unsqueeze(1);
  step.mask = torch::zeros({rows, length}, x.options())
                  .masked_fill(unfilled, -std::numeric_limits<float>::infinity())
                  .view({rows, 1, 1, length});
  for (size_t i = 0; i < decoder_layers_.size(); ++i) {
    x = decoder_layers_[i]->ForwardStep(x, &(*layers)[i], memory_mask, step);
  }
  return OutputLogits(x).squeeze(1);
}

}  // namespace quantmt
