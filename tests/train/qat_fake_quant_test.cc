// FakeQuantLinear: quantize-dequantize forward, clipped straight-through
// gradients, observed input ranges, and its buffers in checkpoints.
#include <gtest/gtest.h>

#include <filesystem>

#include "model/model_io.h"
#include "train/common/trainer.h"
#include "train/compress/fake_quant_linear.h"

namespace quantmt::train {
namespace {

namespace fs = std::filesystem;

// The definition, written out: clamp(round(x / s), -127, 127) * s, with
// x / s computed as x * (1 / s) in float32 like LibTorch's kernels.
torch::Tensor QuantizeDequantize(const torch::Tensor& x, const torch::Tensor& scale) {
  return torch::round(x * scale.reciprocal()).clamp(-127, 127) * scale;
}

TEST(FakeQuantizeTest, PerTensorForwardIsQuantizeDequantize) {
  torch::manual_seed(1);
  const auto x = torch::randn({64, 48}) * 3;
  const auto scale = torch::tensor(0.02f);
  const auto y = FakeQuantizePerTensor(x, scale);
  EXPECT_TRUE(torch::equal(y, QuantizeDequantize(x, scale)));
  // At most 255 distinct values, all multiples of the scale; the range clips.
  EXPECT_LE(std::get<0>(torch::_unique(y)).numel(), 255);
  EXPECT_NEAR(y.abs().max().item<float>(), 127 * 0.02f, 1e-6);
}

TEST(FakeQuantizeTest, PerTensorGradientIsIdentityInsideTheRangeAndZeroOutside) {
  const float s = 0.1f;
  // Inside: |x / s| <= 127 after rounding; outside: clamped.
  const auto x = torch::tensor({0.0f, 1.234f, -5.0f, 12.7f, -12.74f, 12.76f, -13.0f, 100.0f})
                     .requires_grad_(true);
  FakeQuantizePerTensor(x, torch::tensor(s)).sum().backward();
  const auto expected = torch::tensor({1.0f, 1.0f, 1.0f, 1.0f, 1.0f, 0.0f, 0.0f, 0.0f});
  EXPECT_TRUE(torch::equal(x.grad(), expected)) << x.grad();
}

TEST(FakeQuantizeTest, PerRowUsesEachRowsOwnScaleAndPassesGradients) {
  torch::manual_seed(2);
  auto w = torch::randn({5, 16});
  w[1] *= 100;   // rows of very different magnitude
  w[3].zero_();  // an all-zero row (like the padding embedding)
  const auto scales = RowScales(w);
  ASSERT_EQ(scales.sizes(), torch::IntArrayRef({5}));
  EXPECT_TRUE(scales.gt(0).all().item<bool>());
  EXPECT_TRUE(torch::allclose(scales[1], w[1].abs().max() / 127));
  const auto wq = w.clone().requires_grad_(true);
  const auto y = FakeQuantizePerRow(wq, scales);
  EXPECT_TRUE(torch::equal(y, QuantizeDequantize(w, scales.unsqueeze(1))));
  EXPECT_TRUE(torch::equal(y[3], torch::zeros({16})));
  // Per-row rounding error at most half a step of that row.
  EXPECT_TRUE(((y - w).abs() <= scales.unsqueeze(1) / 2 + 1e-7).all().item<bool>());
  // max|w[row]| maps to 127: no weight is clipped, so the gradient is identity.
  y.sum().backward();
  EXPECT_TRUE(torch::equal(wq.grad(), torch::ones_like(w)));
}

TEST(FakeQuantLinearTest, ForwardAndEmbedRowsComputeWithQuantizedValues) {
  torch::manual_seed(3);
  FakeQuantLinear layer({16, 8, /*bias=*/true, LinearRole::kFeedForward}, 0.01);
  {
    torch::NoGradGuard no_grad;
    layer.named_parameters()["bias"].uniform_(-1, 1);
  }
  const auto x = torch::randn({3, 4, 16});
  layer.train();
  const auto y = layer.Forward(x);
  // First batch: the observed range is that batch's max|x|.
  EXPECT_FLOAT_EQ(layer.input_range().item<float>(), x.abs().max().item<float>());
  const auto scale = layer.InputScale();
  const auto w = layer.weight();
  const auto expected = torch::nn::functional::linear(
      QuantizeDequantize(x, scale), QuantizeDequantize(w, RowScales(w).unsqueeze(1)), layer.bias());
  EXPECT_TRUE(torch::allclose(y, expected, 1e-5, 1e-6));

  FakeQuantLinear table({6, 10, false, LinearRole::kEmbedding}, 0.01);
  const auto ids = torch::tensor({{0, 4, 9}, {4, 4, 2}}, torch::kLong);
  const auto rows = table.EmbedRows(ids);
  const auto quantized_table =
      QuantizeDequantize(table.weight(), RowScales(table.weight()).unsqueeze(1));
  EXPECT_TRUE(torch::allclose(rows, torch::embedding(quantized_table, ids), 1e-6, 1e-7));
}

TEST(FakeQuantLinearTest, ObserverAveragesFirstBatchesThenMovesWithMomentum) {
  FakeQuantLinear layer({4, 2, false, LinearRole::kAttention}, /*ema_momentum=*/0.25);
  layer.train();
  auto feed = [&layer](float max_abs) {
    layer.Forward(torch::tensor({0.5f, -max_abs, 0.0f, 0.1f}).view({1, 4}));
    return layer.input_range().item<float>();
  };
  EXPECT_FLOAT_EQ(feed(2), 2);  // n = 1: the batch itself
  EXPECT_FLOAT_EQ(feed(4), 3);  // n = 2: mean of 2 and 4
  EXPECT_FLOAT_EQ(feed(6), 4);  // n = 3: mean of 2, 4, 6
  EXPECT_FLOAT_EQ(feed(8), 5);  // n = 4: momentum 0.25 from now on
  EXPECT_FLOAT_EQ(feed(1), 4);  // 5 + 0.25 * (1 - 5)
  EXPECT_FLOAT_EQ(layer.input_batches().item<float>(), 5);
  // Evaluation reads the range without moving it.
  layer.eval();
  layer.Forward(torch::full({1, 4}, 100.0f));
  EXPECT_FLOAT_EQ(layer.input_range().item<float>(), 4);
  EXPECT_FLOAT_EQ(layer.InputScale().item<float>(), 4.0f / 127);
}

TEST(FakeQuantLinearTest, FactoryQuantizesTheRolesAskedFor) {
  FakeQuantOptions options;
  options.quantize_embeddings = false;
  const LinearFactory make = FakeQuantLinearFactory(options);
  auto is_fake = [&make](LinearRole role) {
    return dynamic_cast<FakeQuantLinear*>(make({4, 4, false, role}).get()) != nullptr;
  };
  EXPECT_TRUE(is_fake(LinearRole::kAttention));
  EXPECT_TRUE(is_fake(LinearRole::kFeedForward));
  EXPECT_TRUE(is_fake(LinearRole::kOutputProjection));
  EXPECT_FALSE(is_fake(LinearRole::kEmbedding));
}

ModelConfig TinyQatConfig() {
  ModelConfig config;
  config.d_model = 16;
  config.encoder_layers = {{2, 32, 0}};
  config.decoder_layers = {{2, 32, 0}};
  config.source_vocab_size = config.target_vocab_size = 20;
  config.max_source_positions = config.max_target_positions = 16;
  return config;
}

std::shared_ptr<Transformer> ObservedModel(uint64_t seed) {
  torch::manual_seed(seed);
  auto model = Transformer::Create(TinyQatConfig(), FakeQuantLinearFactory({}));
  EXPECT_TRUE(model.ok()) << model.status();
  (*model)->train();
  torch::NoGradGuard no_grad;
  (*model)->Forward(torch::randint(4, 20, {2, 7}), torch::randint(4, 20, {2, 5}));
  return *model;
}

TEST(FakeQuantLinearTest, ObservedRangesSaveLoadAndAverageWithCheckpoints) {
  const fs::path dir = fs::path(::testing::TempDir()) / "qat_fake_quant_test";
  fs::remove_all(dir);
  auto a = ObservedModel(10), b = ObservedModel(11);
  ASSERT_TRUE(SaveModelDirectory((dir / "a").string(), TinyQatConfig(), *a).ok());
  ASSERT_TRUE(SaveModelDirectory((dir / "b").string(), TinyQatConfig(), *b).ok());

  const auto ranges = [](torch::nn::Module& m) {
    std::vector<torch::Tensor> found;
    for (const auto& item : m.named_buffers()) {
      if (item.key().find("input_range") != std::string::npos) found.push_back(item.value());
    }
    return torch::stack(found);
  };
  ASSERT_GT(ranges(*a).numel(), 10);
  EXPECT_TRUE(ranges(*a).gt(0).all().item<bool>());

  // The plain engine refuses a file with observer tensors; the QAT layers load it.
  EXPECT_FALSE(LoadTransformer((dir / "a").string()).ok());
  auto loaded = LoadTransformer((dir / "a").string(), FakeQuantLinearFactory({}));
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_TRUE(torch::equal(ranges(**loaded), ranges(*a)));

  auto averaged = Transformer::Create(TinyQatConfig(), FakeQuantLinearFactory({}));
  ASSERT_TRUE(averaged.ok());
  ASSERT_TRUE(AverageCheckpoints({(dir / "a").string(), (dir / "b").string()}, averaged->get(),
                                 FakeQuantLinearFactory({}))
                  .ok());
  EXPECT_TRUE(torch::allclose(ranges(**averaged), (ranges(*a) + ranges(*b)) / 2, 1e-6, 1e-7));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace quantmt::train
