// Compressed models -> their float twins (model/dequantize.h), the form in
// which int8 and DAQ checkpoints serve on a GPU: the twin holds exactly the
// weights the codes encode, and computes what the compressed model computes
// up to the int8 activation rounding it drops.
#include "model/dequantize.h"

#include <gtest/gtest.h>

#include "model/daq_linear.h"
#include "model/daq_params.h"
#include "model/int8_convert.h"
#include "model/int8_linear.h"
#include "model/int8_quantize.h"
#include "tiny_model.h"

namespace quantmt {
namespace {

// Biases and layer norms away from their initial zeros and ones, so that a
// twin which failed to copy them would show.
void RandomizeVectors(Transformer& model) {
  torch::NoGradGuard no_grad;
  for (auto& parameter : model.parameters()) {
    if (parameter.dim() == 1 && parameter.is_floating_point()) {
      parameter.add_(torch::randn_like(parameter) * 0.2);
    }
  }
}

std::shared_ptr<Transformer> RandomDaqModel() {
  ModelConfig config = testing::TinyConfig();
  DaqParams params;
  params.buckets = 2;
  params.centroids = 64;
  config.quantization = {"daq", DaqParamsToJson(params)};
  torch::manual_seed(5);
  auto model = Transformer::Create(config);
  EXPECT_TRUE(model.ok()) << model.status();
  EXPECT_GT(testing::SetRandomDaqCodes(**model, torch::kFloat32, 0.3), 10);
  RandomizeVectors(**model);
  (*model)->eval();
  return *model;
}

torch::Tensor Logits(Transformer& model) {
  torch::NoGradGuard no_grad;
  torch::manual_seed(3);
  auto source = torch::randint(4, 50, {3, 9});
  auto target = torch::randint(4, 50, {3, 7});
  return model.Forward(source, target);
}

std::shared_ptr<Transformer> Twin(Transformer& model) {
  auto twin = DequantizeTransformer(model);
  EXPECT_TRUE(twin.ok()) << twin.status();
  if (!twin.ok()) return nullptr;
  EXPECT_EQ((*twin)->config().quantization.scheme, "none");
  for (const auto& module : (*twin)->modules()) {
    if (auto* linear = dynamic_cast<Linear*>(module.get())) {
      EXPECT_NE(dynamic_cast<FloatLinear*>(linear), nullptr);
    }
  }
  return *twin;
}

TEST(DequantizeTest, DaqTwinComputesWhatTheDaqModelComputes) {
  auto daq = RandomDaqModel();
  auto twin = Twin(*daq);
  ASSERT_NE(twin, nullptr);
  // Every layer holds the decoded codes.
  auto twin_modules = twin->named_modules();
  for (const auto& item : daq->named_modules()) {
    if (auto* layer = dynamic_cast<DaqLinear*>(item.value().get())) {
      auto* dense = dynamic_cast<FloatLinear*>(twin_modules[item.key()].get());
      ASSERT_NE(dense, nullptr) << item.key();
      EXPECT_TRUE(torch::equal(dense->weight(), layer->DenseWeight())) << item.key();
    }
  }
  // The same logits, prepared for serving or not (the DAQ layers pick their
  // own kernels, hence float rounding, not bit equality).
  for (bool prepared : {false, true}) {
    if (prepared) {
      PrepareForInference(*daq);
      PrepareForInference(*twin);
    }
    auto expected = Logits(*daq), actual = Logits(*twin);
    EXPECT_TRUE(torch::allclose(actual, expected, 1e-4, 1e-4))
        << "prepared " << prepared << ", max difference "
        << (actual - expected).abs().max().item<float>();
  }
}

TEST(DequantizeTest, Int8TwinHoldsTheDequantizedCodes) {
  auto source = testing::TinyModel(testing::TinyConfig(), 11);
  RandomizeVectors(*source);
  for (const char* scheme : {"int8_dynamic", "int8_static"}) {
    SCOPED_TRACE(scheme);
    auto quantized = QuantizeTransformer(*source, {scheme, "{}"});
    ASSERT_TRUE(quantized.ok()) << quantized.status();
    auto twin = Twin(**quantized);
    ASSERT_NE(twin, nullptr);
    auto twin_modules = twin->named_modules();
    int layers = 0;
    for (const auto& item : (*quantized)->named_modules()) {
      if (auto* layer = dynamic_cast<Int8Linear*>(item.value().get())) {
        auto* dense = dynamic_cast<FloatLinear*>(twin_modules[item.key()].get());
        ASSERT_NE(dense, nullptr) << item.key();
        EXPECT_TRUE(
            torch::equal(dense->weight(), DequantizeRows(layer->weight(), layer->weight_scale())))
            << item.key();
        ++layers;
      }
    }
    EXPECT_GT(layers, 10);
    // Layer norms, biases and positions come from the float source.
    auto twin_parameters = twin->named_parameters();
    for (const auto& item : source->named_parameters()) {
      if (item.value().dim() == 1) {
        EXPECT_TRUE(torch::equal(twin_parameters[item.key()], item.value())) << item.key();
      }
    }
    // The twin's logits are the float model's up to the weights' rounding.
    auto expected = Logits(*source), actual = Logits(*twin);
    const float spread = expected.abs().max().item<float>();
    EXPECT_LT((actual - expected).abs().max().item<float>(), 0.05f * spread);
    EXPECT_FALSE(torch::equal(actual, expected));  // the weights were rounded
  }
}

TEST(DequantizeTest, FloatModelIsCopiedExactly) {
  auto source = testing::TinyModel(testing::VariedTinyConfigs()[1], 13);
  RandomizeVectors(*source);
  auto twin = Twin(*source);
  ASSERT_NE(twin, nullptr);
  EXPECT_TRUE(torch::equal(Logits(*twin), Logits(*source)));
}

}  // namespace
}  // namespace quantmt
