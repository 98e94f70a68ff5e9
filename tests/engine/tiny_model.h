// Small random-weight Transformers for engine tests.
#pragma once

#include <torch/torch.h>

#include <vector>

#include "model/daq_kernels.h"
#include "model/daq_linear.h"
#include "model/transformer.h"

namespace quantmt::testing {

// A 2-encoder, 2-decoder layer model, d_model 32, vocabulary 50, with
// heterogeneous layers (different heads and FFN sizes per layer).
inline ModelConfig TinyConfig(NormPosition norm = NormPosition::kPre,
                              Activation activation = Activation::kRelu,
                              PositionEncoding positions = PositionEncoding::kSinusoidal) {
  ModelConfig config;
  config.d_model = 32;
  config.encoder_layers = {{4, 64, 0}, {2, 48, 16}};
  config.decoder_layers = {{4, 64, 0}, {8, 40, 32}};
  config.norm = norm;
  config.activation = activation;
  config.positions = positions;
  config.source_vocab_size = config.target_vocab_size = 50;
  config.max_source_positions = config.max_target_positions = 64;
  return config;
}

// Tiny configurations that cover what decoders must handle: pre-norm with
// ReLU and sinusoidal positions; post-norm with GELU, learned positions and
// separate target vocabulary and output projection; pre-norm with SiLU.
inline std::vector<ModelConfig> VariedTinyConfigs() {
  ModelConfig post_norm =
      TinyConfig(NormPosition::kPost, Activation::kGelu, PositionEncoding::kLearned);
  post_norm.shared_embeddings = false;
  post_norm.tie_output_projection = false;
  post_norm.target_vocab_size = 61;
  return {TinyConfig(), post_norm, TinyConfig(NormPosition::kPre, Activation::kSilu)};
}

inline std::shared_ptr<Transformer> TinyModel(const ModelConfig& config, uint64_t seed = 7) {
  torch::manual_seed(seed);
  auto model = Transformer::Create(config);
  EXPECT_TRUE(model.ok()) << model.status();
  (*model)->eval();
  return *model;
}

// Random codes in every DAQ layer of `model` (centroids normal with standard
// deviation `spread`, stored with `scale_dtype` scales); returns the layers.
inline int SetRandomDaqCodes(Transformer& model, torch::ScalarType scale_dtype,
                             double spread = 1.0) {
  int layers = 0;
  for (const auto& item : model.named_modules()) {
    auto* layer = dynamic_cast<DaqLinear*>(item.value().get());
    if (layer == nullptr) continue;
    const DaqLayout& l = layer->layout();
    layer->SetCodes(
        torch::randn({l.buckets, l.centroids, l.block}) * spread,
        torch::randint(0, l.centroids, {l.out_features, l.blocks_per_row()}).to(torch::kUInt8),
        daq::EvenBucketOffsets(l.out_features, l.buckets), scale_dtype);
    ++layers;
  }
  return layers;
}

}  // namespace quantmt::testing
