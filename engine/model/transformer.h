// The Transformer encoder-decoder: one definition for training (full,
// teacher-forced forward with dropout) and inference (encode once, then
// incremental decoding steps over cached keys and values).
//
// Parameter names (dot-separated module paths, e.g.
// "encoder.layers.0.self_attn.q_proj.weight") are the contract with the
// checkpoint file; docs/checkpoint-format.md lists them.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "model/attention.h"
#include "model/linear.h"
#include "model/model_config.h"
#include "quantmt/engine/mutex.h"

namespace quantmt {

// Dropout rates; all zero at inference. Set by the training tools.
struct DropoutConfig {
  double residual = 0.0;    // after attention/FFN blocks and on embeddings
  double attention = 0.0;   // on attention weights
  double activation = 0.0;  // inside the FFN, after the activation
};

class FeedForward : public torch::nn::Module {
 public:
  FeedForward(int64_t d_model, int64_t ffn_dim, Activation activation,
              const LinearFactory& make_linear);
  torch::Tensor Forward(const torch::Tensor& x, double activation_dropout);

 private:
  Activation activation_;
  std::shared_ptr<Linear> fc1_, fc2_;
};

class EncoderLayer : public torch::nn::Module {
 public:
  EncoderLayer(const ModelConfig& config, const LayerConfig& layer,
               const LinearFactory& make_linear);
  // x [B, S, d]; mask additive [B, 1, 1, S].
  torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& mask,
                        const DropoutConfig& dropout);

 private:
  bool pre_norm_;
  std::shared_ptr<MultiHeadAttention> self_attn_;
  torch::nn::LayerNorm self_attn_layer_norm_{nullptr};
  std::shared_ptr<FeedForward> ffn_;
  torch::nn::LayerNorm final_layer_norm_{nullptr};
};

// Cached state of one decoder layer during incremental decoding.
struct DecoderLayerCache {
  KeyValueCache self_attention;   // grows by one position per step
  KeyValueCache cross_attention;  // projected encoder output, fixed
};

class DecoderLayer : public torch::nn::Module {
 public:
  DecoderLayer(const ModelConfig& config, const LayerConfig& layer,
               const LinearFactory& make_linear);
  // Teacher-forced: x [B, T, d], memory [B, S, d]; masks additive.
  torch::Tensor Forward(const torch::Tensor& x, const torch::Tensor& memory,
                        const torch::Tensor& causal_mask, const torch::Tensor& memory_mask,
                        const DropoutConfig& dropout);
  // One step: x [B, 1, d], each row at its position in `step`.
  torch::Tensor ForwardStep(const torch::Tensor& x, DecoderLayerCache* cache,
                            const torch::Tensor& memory_mask, const StepPositions& step);
  KeyValueCache ProjectMemory(const torch::Tensor& memory);

 private:
  torch::Tensor FeedForwardBlock(const torch::Tensor& x, double residual_dropout,
                                 double activation_dropout);

  bool pre_norm_;
  std::shared_ptr<MultiHeadAttention> self_attn_;
  torch::nn::LayerNorm self_attn_layer_norm_{nullptr};
  std::shared_ptr<MultiHeadAttention> encoder_attn_;
  torch::nn::LayerNorm encoder_attn_layer_norm_{nullptr};
  std::shared_ptr<FeedForward> ffn_;
  torch::nn::LayerNorm final_layer_norm_{nullptr};
};

// Encoder output for a batch: what every decoding step needs.
struct EncoderOutput {
  torch::Tensor memory;       // [B, S, d]
  torch::Tensor memory_mask;  // additive [B, 1, 1, S]: 0 for tokens, -inf for padding
};

// The whole incremental-decoding state of a batch. Rows may be at different
// positions: in continuous batching sentences join a running batch between
// steps, each starting at position 0 (per-row positions and a key mask).
struct DecoderState {
  std::vector<DecoderLayerCache> layers;
  torch::Tensor memory_mask;            // [B, 1, 1, S]
  std::vector<int64_t> positions;       // per row: target tokens fed so far
  std::vector<int64_t> source_lengths;  // per row: source tokens, padding excluded
  // No row is fed more than this many tokens; caps cache growth (0: unknown).
  int64_t capacity_limit = 0;

  int64_t batch_size() const { return static_cast<int64_t>(positions.size()); }
  // Keeps the rows in `rows`, in that order: finished sentences leave the
  // batch, beam search reorders its hypotheses. Drops cache slots no kept
  // row uses (source padding of sentences that left).
  void Select(const std::vector<int64_t>& rows);
  // Appends the rows of `other` (sentences joining a running batch); the
  // shorter source axis is padded and masked.
  void Append(DecoderState other);
  // Bytes held by the key/value caches.
  int64_t cache_bytes() const;
};

class Transformer : public torch::nn::Module {
 public:
  // Builds a model with freshly initialized weights for `config`, its layers
  // in the precision of config.quantization.
  static absl::StatusOr<std::shared_ptr<Transformer>> Create(const ModelConfig& config);
  // The same with the caller's layers (training with fake quantization).
  static absl::StatusOr<std::shared_ptr<Transformer>> Create(const ModelConfig& config,
                                                             const LinearFactory& make_linear);

  const ModelConfig& config() const { return config_; }
  void set_dropout(const DropoutConfig& dropout) { dropout_ = dropout; }

  // source_ids: int64 [B, S], padded with pad_id at the end.
  EncoderOutput Encode(const torch::Tensor& source_ids);

  // Teacher-forced logits: target_in int64 [B, T] -> [B, T, target_vocab].
  torch::Tensor DecodeFull(const torch::Tensor& target_in, const EncoderOutput& encoded);

  // Convenience: Encode + DecodeFull.
  torch::Tensor Forward(const torch::Tensor& source_ids, const torch::Tensor& target_in);

  // Projects the encoder output for cross-attention, once per sentence.
  DecoderState StartDecoding(const EncoderOutput& encoded);

  // Feeds one token per row (int64 [B]), each at its row's position, and
  // returns logits [B, target_vocab].
  //
  // Thread safety: Encode, StartDecoding and DecodeStep only read the
  // weights, so several threads may decode with one model at once (each
  // with its own DecoderState), as long as nobody trains or moves it.
  torch::Tensor DecodeStep(const torch::Tensor& tokens, DecoderState* state);

  // Cross-attention keys and values of every decoder layer for encoder
  // output memory [B, S, d] (what StartDecoding puts in a DecoderState).
  std::vector<KeyValueCache> ProjectMemory(const torch::Tensor& memory);

  // The same step as DecodeStep over caches of a fixed number of slots,
  // written in place, with each row's position already on the device: row r
  // feeds tokens[r] at slot positions[r] (int64 [B]) and attends to slots
  // 0..positions[r]. It reads nothing back to the host and allocates by
  // shape only, so a CUDA graph can capture it (decoding/cuda_step_ops.h).
  // `layers` hold self-attention caches [B, H, slots, D] and cross-attention
  // keys/values [B, H, S, D]; memory_mask is additive [B, 1, 1, S]. Returns
  // logits [B, target_vocab]. REQUIRES: positions[r] < slots.
  torch::Tensor DecodeStepInPlace(const torch::Tensor& tokens, const torch::Tensor& positions,
                                  std::vector<DecoderLayerCache>* layers,
                                  const torch::Tensor& memory_mask);

 private:
  explicit Transformer(const ModelConfig& config, const LinearFactory& make_linear);

  torch::Tensor Embed(const torch::Tensor& ids, Linear& table,
                      const torch::nn::Embedding& learned_positions, int64_t first_position);
  // One token per row, row r at positions[r] (int64 [B]): ids [B, 1].
  torch::Tensor EmbedAt(const torch::Tensor& ids, Linear& table,
                        const torch::nn::Embedding& learned_positions,
                        const torch::Tensor& positions);
  // The sinusoid table [max_positions, d] in the dtype and device of `like`.
  torch::Tensor SinusoidTable(const torch::Tensor& like) const;
  torch::Tensor OutputLogits(const torch::Tensor& hidden);
  // One step with positions on the device: attends to `length` slots, the
  // caches growing up to `capacity_limit` (0: unbounded).
  torch::Tensor DecodeStepAt(const torch::Tensor& tokens, const torch::Tensor& positions,
                             int64_t length, int64_t capacity_limit,
                             std::vector<DecoderLayerCache>* layers,
                             const torch::Tensor& memory_mask);
  Linear& target_embedding() const;

  ModelConfig config_;
  DropoutConfig dropout_;
  double embed_scale_;

  // Module tree: encoder.{embed_tokens,embed_positions,layers,layer_norm},
  // decoder.{embed_tokens,embed_positions,layers,layer_norm,output_projection}.
  std::shared_ptr<torch::nn::Module> encoder_, decoder_;
  std::shared_ptr<Linear> encoder_embed_, decoder_embed_;  // token tables [vocab, d]
  torch::nn::Embedding encoder_positions_{nullptr}, decoder_positions_{nullptr};
  std::vector<std::shared_ptr<EncoderLayer>> encoder_layers_;
  std::vector<std::shared_ptr<DecoderLayer>> decoder_layers_;
  torch::nn::LayerNorm encoder_norm_{nullptr}, decoder_norm_{nullptr};
  std::shared_ptr<Linear> output_projection_;  // null when tied to the embedding

  // Sinusoidal positions, computed once in float64 at construction. The
  // copy in the model's dtype and device is made on first use, by whichever
  // replica decodes first.
  torch::Tensor sinusoid_table_;
  mutable Mutex sinusoid_mutex_;
  mutable torch::Tensor sinusoid_cache_ ABSL_GUARDED_BY(sinusoid_mutex_);
};

}  // namespace quantmt
