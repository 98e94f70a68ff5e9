// The Transformer's incremental decoding against full recomputation, for
// every architecture variant the config offers.
#include "model/transformer.h"

#include <gtest/gtest.h>

#include "tiny_model.h"

namespace quantmt {
namespace {

using testing::TinyConfig;
using testing::TinyModel;

struct Variant {
  NormPosition norm;
  Activation activation;
  PositionEncoding positions;
  bool shared;
  bool tied;
};

class TransformerVariantTest : public ::testing::TestWithParam<Variant> {
 protected:
  ModelConfig Config() const {
    const Variant& v = GetParam();
    ModelConfig config = TinyConfig(v.norm, v.activation, v.positions);
    config.shared_embeddings = v.shared;
    config.tie_output_projection = v.tied;
    if (!v.shared) config.target_vocab_size = 40;
    return config;
  }
};

// Tolerance: float32 over 2+2 layers of width 32; observed differences are
// around 1e-6, so 1e-5 leaves room without hiding a real bug (a wrong
// position or mask shifts logits by ~1e-1).
constexpr double kLogitTolerance = 1e-5;

TEST_P(TransformerVariantTest, IncrementalDecodingMatchesFullRecomputation) {
  torch::NoGradGuard no_grad;
  auto model = TinyModel(Config());
  // Two sources of different lengths, padded.
  auto source = torch::tensor({5, 6, 7, 8, 9, 3, 11, 12, 3, 0, 0, 0}, torch::kLong).view({2, 6});
  auto target = torch::tensor({2, 13, 14, 15, 16, 2, 17, 18, 19, 20}, torch::kLong).view({2, 5});
  auto encoded = model->Encode(source);
  auto full = model->DecodeFull(target, encoded);  // [2, 5, V]

  DecoderState state = model->StartDecoding(encoded);
  double max_diff = 0;
  for (int64_t t = 0; t < target.size(1); ++t) {
    auto step = model->DecodeStep(target.select(1, t), &state);
    max_diff = std::max(max_diff, (step - full.select(1, t)).abs().max().item<double>());
  }
  EXPECT_LT(max_diff, kLogitTolerance);
  std::cout << "max |incremental - full| logit difference: " << max_diff << "\n";
}

TEST_P(TransformerVariantTest, PaddingDoesNotChangeASentence) {
  torch::NoGradGuard no_grad;
  auto model = TinyModel(Config());
  auto alone = torch::tensor({11, 12, 3}, torch::kLong).view({1, 3});
  auto padded = torch::tensor({5, 6, 7, 8, 9, 3, 11, 12, 3, 0, 0, 0}, torch::kLong).view({2, 6});
  auto target = torch::tensor({2, 17, 18}, torch::kLong).view({1, 3});
  auto logits_alone = model->Forward(alone, target);
  auto logits_batched = model->Forward(padded, torch::cat({target, target})).narrow(0, 1, 1);
  EXPECT_LT((logits_alone - logits_batched).abs().max().item<double>(), kLogitTolerance);
}

INSTANTIATE_TEST_SUITE_P(
    Architectures, TransformerVariantTest,
    ::testing::Values(
        Variant{NormPosition::kPre, Activation::kRelu, PositionEncoding::kSinusoidal, true, true},
        Variant{NormPosition::kPost, Activation::kRelu, PositionEncoding::kSinusoidal, true, true},
        Variant{NormPosition::kPre, Activation::kGelu, PositionEncoding::kLearned, true, false},
        Variant{NormPosition::kPost, Activation::kSilu, PositionEncoding::kLearned, false, false},
        Variant{NormPosition::kPre, Activation::kSilu, PositionEncoding::kSinusoidal, false,
                true}));

TEST(TransformerTest, ParameterNamesFollowTheCheckpointContract) {
  auto model = TinyModel(TinyConfig());
  auto parameters = model->named_parameters();
  EXPECT_TRUE(parameters.contains("encoder.embed_tokens.weight"));
  EXPECT_TRUE(parameters.contains("encoder.layers.1.self_attn.q_proj.weight"));
  EXPECT_TRUE(parameters.contains("decoder.layers.0.encoder_attn.out_proj.bias"));
  EXPECT_TRUE(parameters.contains("decoder.layers.1.ffn.fc2.weight"));
  EXPECT_TRUE(parameters.contains("decoder.layer_norm.weight"));
  // Shared and tied: no separate target table, no output projection.
  EXPECT_FALSE(parameters.contains("decoder.embed_tokens.weight"));
  EXPECT_FALSE(parameters.contains("decoder.output_projection.weight"));
  // Per-layer sizes: layer 1 of the encoder has attention_dim 16, FFN 48.
  EXPECT_EQ(parameters["encoder.layers.1.self_attn.q_proj.weight"].sizes(),
            torch::IntArrayRef({16, 32}));
  EXPECT_EQ(parameters["encoder.layers.1.ffn.fc1.weight"].sizes(), torch::IntArrayRef({48, 32}));
}

TEST(TransformerTest, UnknownQuantizationSchemeIsRefused) {
  ModelConfig config = TinyConfig();
  config.quantization.scheme = "int3_magic";
  auto model = Transformer::Create(config);
  ASSERT_FALSE(model.ok());
  EXPECT_NE(model.status().message().find("int3_magic"), std::string::npos);
}

}  // namespace
}  // namespace quantmt

namespace quantmt {
namespace {

// CUDA gives the CPU's logits (float32: TF32 matmuls allowed, so 1e-2;
// float16/bfloat16 within their precision). Skipped without a GPU.
TEST(TransformerCudaTest, CudaMatchesCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::NoGradGuard no_grad;
  auto model = testing::TinyModel(testing::TinyConfig());
  auto source = torch::tensor({5, 6, 7, 8, 9, 3, 11, 12, 3, 0, 0, 0}, torch::kLong).view({2, 6});
  auto target = torch::tensor({2, 13, 14, 15, 16, 2, 17, 18, 19, 20}, torch::kLong).view({2, 5});
  auto expected = model->Forward(source, target);
  const std::vector<std::pair<torch::ScalarType, double>> cases = {
      {torch::kFloat32, 1e-2}, {torch::kFloat16, 5e-2}, {torch::kBFloat16, 2e-1}};
  for (const auto& [dtype, tolerance] : cases) {
    model->to(torch::kCUDA, dtype);
    auto logits = model->Forward(source.cuda(), target.cuda()).to(torch::kCPU, torch::kFloat32);
    EXPECT_LT((logits - expected).abs().max().item<double>(), tolerance) << dtype;
    // Incremental decoding on the GPU agrees with its own full pass.
    auto encoded = model->Encode(source.cuda());
    DecoderState state = model->StartDecoding(encoded);
    auto full = model->DecodeFull(target.cuda(), encoded).to(torch::kFloat32);
    for (int64_t t = 0; t < target.size(1); ++t) {
      auto step = model->DecodeStep(target.select(1, t).cuda(), &state).to(torch::kFloat32);
      EXPECT_LT((step - full.select(1, t)).abs().max().item<double>(), tolerance) << dtype;
    }
    model->to(torch::kCPU, torch::kFloat32);
  }
}

}  // namespace
}  // namespace quantmt
