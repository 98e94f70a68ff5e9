// Int8Linear against FloatLinear and against its own reference math.
#include "model/int8_linear.h"

#include <gtest/gtest.h>

#include "model/int8_quantize.h"

namespace quantmt {
namespace {

double RelativeError(const torch::Tensor& actual, const torch::Tensor& expected) {
  return ((actual - expected).norm() / expected.norm()).item<double>();
}

struct Layers {
  std::shared_ptr<FloatLinear> float_layer;
  std::shared_ptr<Int8Linear> int8_layer;
};

Layers MakeLayers(int64_t in, int64_t out, Int8Mode mode) {
  torch::manual_seed(in * 31 + out);
  Layers layers;
  layers.float_layer = std::make_shared<FloatLinear>(in, out, true);
  torch::NoGradGuard no_grad;
  layers.float_layer->named_parameters()["bias"].uniform_(-0.5, 0.5);
  layers.int8_layer = std::make_shared<Int8Linear>(in, out, true, mode);
  layers.int8_layer->SetFromFloat(layers.float_layer->weight(),
                                  layers.float_layer->named_parameters()["bias"]);
  return layers;
}

class Int8LinearTest : public ::testing::TestWithParam<int64_t> {};

// Tolerance: 8-bit weights and activations on Gaussian data give a relative
// output error of about 1-2% (each operand's rounding noise is ~1% of its
// RMS); 4% is a failure margin that a wrong scale or a missing bias breaks.
TEST_P(Int8LinearTest, DynamicIsCloseToFloat) {
  const int64_t rows = GetParam();
  Layers layers = MakeLayers(256, 96, Int8Mode::kDynamic);
  layers.int8_layer->PrepareForInference();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({rows, 3, 256});
  auto expected = layers.float_layer->Forward(x);
  auto actual = layers.int8_layer->Forward(x);
  ASSERT_EQ(actual.sizes(), expected.sizes());
  EXPECT_LT(RelativeError(actual, expected), 0.04);
}

// The CPU kernel path (oneDNN integer GEMM + scaling) computes the same
// numbers as the reference path (float GEMM on dequantized operands) up to
// float rounding of the sums.
TEST_P(Int8LinearTest, KernelPathEqualsReferenceMath) {
  const int64_t rows = GetParam();
  for (Int8Mode mode : {Int8Mode::kDynamic, Int8Mode::kStatic}) {
    Layers layers = MakeLayers(256, 96, mode);
    layers.int8_layer->SetInputScale(0.02f);
    torch::NoGradGuard no_grad;
    auto x = torch::randn({rows, 256});
    auto reference = layers.int8_layer->Forward(x);  // not prepared: reference math
    layers.int8_layer->PrepareForInference();
    auto fast = layers.int8_layer->Forward(x);
    EXPECT_TRUE(torch::allclose(fast, reference, 1e-4, 1e-4))
        << "mode " << static_cast<int>(mode) << " max diff "
        << (fast - reference).abs().max().item<float>();
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, Int8LinearTest, ::testing::Values(1, 2, 8, 40));

TEST(Int8LinearStaticTest, CalibratedScaleIsCloseToFloat) {
  Layers layers = MakeLayers(128, 64, Int8Mode::kStatic);
  torch::NoGradGuard no_grad;
  auto x = torch::randn({50, 128});
  // A scale calibrated on this data: 99.99th percentile-ish, here the max.
  layers.int8_layer->SetInputScale(x.abs().max().item<float>() / 127);
  layers.int8_layer->PrepareForInference();
  EXPECT_LT(RelativeError(layers.int8_layer->Forward(x), layers.float_layer->Forward(x)), 0.05);
}

TEST(Int8LinearTest, EmbedRowsDequantizesTheLookedUpRows) {
  Layers layers = MakeLayers(16, 40, Int8Mode::kDynamic);
  auto ids = torch::tensor({{3, 0}, {39, 3}}, torch::kLong);
  auto rows = layers.int8_layer->EmbedRows(ids);
  ASSERT_EQ(rows.sizes(), torch::IntArrayRef({2, 2, 16}));
  auto table = DequantizeRows(layers.int8_layer->weight(), layers.int8_layer->weight_scale());
  EXPECT_TRUE(torch::equal(rows[1][0], table[39]));
  EXPECT_TRUE(torch::equal(rows[0][0], rows[1][1]));
  EXPECT_LT(RelativeError(rows[1][0], layers.float_layer->weight()[39]), 0.02);
}

TEST(Int8LinearTest, MovingToAnotherDtypeKeepsTheCodes) {
  Layers layers = MakeLayers(16, 8, Int8Mode::kStatic);
  layers.int8_layer->to(torch::kFloat16);
  EXPECT_EQ(layers.int8_layer->weight().scalar_type(), torch::kInt8);
  EXPECT_EQ(layers.int8_layer->weight_scale().scalar_type(), torch::kFloat32);
  EXPECT_EQ(layers.int8_layer->input_scale().scalar_type(), torch::kFloat32);
  EXPECT_EQ(layers.int8_layer->named_parameters()["bias"].scalar_type(), torch::kFloat16);
}

TEST(Int8ParamsTest, ParsesRolesAndRefusesWrongTypes) {
  QuantizationConfig quantization{"int8_static", R"({"quantize_embeddings": false, "x": 1})"};
  auto params = ParseInt8Params(quantization);
  ASSERT_TRUE(params.ok()) << params.status();
  EXPECT_EQ(params->mode, Int8Mode::kStatic);
  EXPECT_FALSE(params->quantize_embeddings);
  EXPECT_TRUE(params->quantize_output_projection);

  auto factory = Int8LinearFactory(*params);
  EXPECT_NE(dynamic_cast<FloatLinear*>(factory({8, 4, false, LinearRole::kEmbedding}).get()),
            nullptr);
  EXPECT_NE(dynamic_cast<Int8Linear*>(factory({8, 4, true, LinearRole::kAttention}).get()),
            nullptr);

  auto bad = ParseInt8Params({"int8_dynamic", R"({"quantize_output_projection": "yes"})"});
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("quantize_output_projection"), std::string::npos);
}

}  // namespace
}  // namespace quantmt
