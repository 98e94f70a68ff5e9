// int8_static export of a fake-quantized model: the tensors obey the format,
// carry exactly the values the fake quantization computed with, and a model
// computing in integers from them gives the fake-quant model's logits.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "checkpoint/safetensors.h"
#include "model/model_io.h"
#include "train/compress/fake_quant_linear.h"
#include "train/compress/int8_static_export.h"
#include "train/compress/qat.h"

namespace quantmt::train {
namespace {

namespace fs = std::filesystem;

ModelConfig TinyConfig(bool tied) {
  ModelConfig config;
  config.d_model = 32;
  config.encoder_layers = {{4, 64, 0}, {2, 48, 16}};
  config.decoder_layers = {{4, 64, 0}};
  config.source_vocab_size = config.target_vocab_size = 40;
  config.max_source_positions = config.max_target_positions = 32;
  config.tie_output_projection = tied;
  return config;
}

// A fake-quant model whose observers have seen a few random batches.
std::shared_ptr<Transformer> TrainedQatModel(const ModelConfig& config) {
  torch::manual_seed(5);
  auto model = Transformer::Create(config, FakeQuantLinearFactory({}));
  EXPECT_TRUE(model.ok()) << model.status();
  std::vector<Batch> batches;
  for (int i = 0; i < 3; ++i) {
    Batch batch;
    batch.source = torch::randint(4, 40, {3, 9});
    batch.target_in = torch::randint(4, 40, {3, 6});
    batch.target_out = batch.target_in;  // unused: observing needs no loss
    batches.push_back(batch);
  }
  ObserveBatches(**model, batches, torch::kCPU);
  (*model)->eval();
  return *model;
}

std::map<std::string, torch::Tensor> ByName(const std::vector<ExportedTensor>& tensors) {
  std::map<std::string, torch::Tensor> map;
  for (const auto& t : tensors) {
    EXPECT_TRUE(map.emplace(t.name, t.value).second) << "duplicate " << t.name;
  }
  return map;
}

TEST(QuantizeRowsTest, IntegersInRangeScalesPositiveHalfStepError) {
  torch::manual_seed(6);
  auto w = torch::randn({7, 20}) * torch::linspace(0.01, 10, 7).unsqueeze(1);
  w[2].zero_();
  const QuantizedRows rows = QuantizeRows(w);
  ASSERT_EQ(rows.values.scalar_type(), torch::kInt8);
  ASSERT_EQ(rows.scales.scalar_type(), torch::kFloat);
  EXPECT_LE(rows.values.abs().max().item<int>(), 127);
  EXPECT_EQ(rows.values.min().item<int>() >= -127, true);
  EXPECT_TRUE(rows.scales.gt(0).all().item<bool>());
  EXPECT_TRUE(torch::equal(rows.values[2], torch::zeros({20}, torch::kInt8)));
  // Every row uses its full range, and dequantizes to the fake-quant weight.
  EXPECT_EQ(rows.values.abs().amax(1)[0].item<int>(), 127);
  const auto dequantized = rows.values.to(torch::kFloat) * rows.scales.unsqueeze(1);
  EXPECT_TRUE(torch::equal(dequantized, FakeQuantizePerRow(w, RowScales(w))));
}

TEST(Int8StaticExportTest, TensorsFollowTheFormat) {
  for (bool tied : {true, false}) {
    SCOPED_TRACE(tied ? "tied" : "untied");
    auto model = TrainedQatModel(TinyConfig(tied));
    const auto tensors = ByName(Int8StaticTensors(*model));
    int layers = 0;
    for (const auto& item : model->named_modules()) {
      auto* layer = dynamic_cast<FakeQuantLinear*>(item.value().get());
      if (layer == nullptr) continue;
      ++layers;
      const std::string p = item.key() + ".";
      ASSERT_TRUE(tensors.count(p + "weight") && tensors.count(p + "weight_scale")) << p;
      const auto& q = tensors.at(p + "weight");
      const auto& scale = tensors.at(p + "weight_scale");
      EXPECT_EQ(q.scalar_type(), torch::kInt8) << p;
      EXPECT_EQ(q.sizes(), layer->weight().sizes()) << p;
      EXPECT_LE(q.abs().max().item<int>(), 127) << p;
      EXPECT_EQ(scale.sizes(), torch::IntArrayRef({layer->weight().size(0)})) << p;
      EXPECT_TRUE(scale.gt(0).all().item<bool>()) << p;
      EXPECT_EQ(tensors.count(p + "bias"), layer->bias().defined() ? 1u : 0u) << p;
      EXPECT_EQ(tensors.count(p + "input_range") + tensors.count(p + "input_batches"), 0u);
      ASSERT_EQ(tensors.count(p + "input_scale"), 1u) << p;
      const auto& input_scale = tensors.at(p + "input_scale");
      EXPECT_EQ(input_scale.dim(), 0) << p;
      EXPECT_EQ(input_scale.scalar_type(), torch::kFloat) << p;
      // Tables that only embed never ran as a projection: their (unused) scale is 1.
      const bool projection = item.key().find("embed_tokens") == std::string::npos || tied;
      EXPECT_FLOAT_EQ(input_scale.item<float>(),
                      projection ? layer->input_range().item<float>() / 127 : 1.0f)
          << p;
    }
    EXPECT_EQ(layers, tied ? 1 + 2 * 6 + 1 * 10 : 1 + 2 * 6 + 1 * 10 + 1);
    // Everything else keeps its name, in float32.
    for (const auto& item : model->named_parameters()) {
      if (item.key().find("layer_norm") == std::string::npos) continue;
      ASSERT_TRUE(tensors.count(item.key())) << item.key();
      EXPECT_TRUE(torch::equal(tensors.at(item.key()), item.value()));
    }
  }
}

// The int8_static computation as the format defines it, in plain integer
// arithmetic: q_x = clamp(round(x / input_scale), -127, 127), then
// (q_x . q_w[row]) * input_scale * weight_scale[row] + bias. An independent
// reading of the exported tensors (the engine's int8 kernels are tested
// against the same tensors in Int8StaticServingTest below).
class ReferenceInt8Linear : public Linear {
 public:
  explicit ReferenceInt8Linear(const LinearSpec& spec) {
    weight_ = register_buffer("weight",
                              torch::zeros({spec.out_features, spec.in_features}, torch::kInt8));
    weight_scale_ = register_buffer("weight_scale", torch::ones({spec.out_features}));
    if (spec.bias) bias_ = register_buffer("bias", torch::zeros({spec.out_features}));
    input_scale_ = register_buffer("input_scale", torch::ones({}));
  }
  torch::Tensor Forward(const torch::Tensor& input) override {
    const auto q_x =
        torch::round(input * input_scale_.reciprocal()).clamp(-127, 127).to(torch::kLong);
    const auto acc = torch::matmul(q_x, weight_.to(torch::kLong).t());  // exact integers
    auto y =
        acc.to(torch::kDouble) * input_scale_.to(torch::kDouble) * weight_scale_.to(torch::kDouble);
    if (bias_.defined()) y = y + bias_;
    return y.to(torch::kFloat);
  }
  torch::Tensor EmbedRows(const torch::Tensor& ids) override {
    return torch::embedding(weight_.to(torch::kFloat) * weight_scale_.unsqueeze(1), ids);
  }
  int64_t in_features() const override { return weight_.size(1); }
  int64_t out_features() const override { return weight_.size(0); }

 private:
  torch::Tensor weight_, weight_scale_, bias_, input_scale_;
};

TEST(Int8StaticExportTest, IntegerComputationReproducesFakeQuantLogits) {
  auto model = TrainedQatModel(TinyConfig(/*tied=*/true));
  const auto tensors = ByName(Int8StaticTensors(*model));
  auto reference = Transformer::Create(TinyConfig(true), [](const LinearSpec& spec) {
    return std::static_pointer_cast<Linear>(std::make_shared<ReferenceInt8Linear>(spec));
  });
  ASSERT_TRUE(reference.ok());
  {
    torch::NoGradGuard no_grad;
    size_t filled = 0;
    for (auto& item : (*reference)->named_parameters()) {
      ASSERT_TRUE(tensors.count(item.key())) << item.key();
      item.value().copy_(tensors.at(item.key()));
      ++filled;
    }
    for (auto& item : (*reference)->named_buffers()) {
      ASSERT_TRUE(tensors.count(item.key())) << item.key();
      item.value().copy_(tensors.at(item.key()));
      ++filled;
    }
    EXPECT_EQ(filled, tensors.size());  // nothing exported that the format lacks
  }
  (*reference)->eval();
  torch::manual_seed(8);
  const auto source = torch::randint(4, 40, {4, 11});
  const auto target = torch::randint(4, 40, {4, 7});
  torch::NoGradGuard no_grad;
  const auto expected = model->Forward(source, target);
  const auto actual = (*reference)->Forward(source, target);
  // Same integers and scales; only float32 summation order differs (the
  // fake-quant model sums q_x*s_x*q_w*s_w products in float32).
  const double max_error = (actual - expected).abs().max().item<double>();
  EXPECT_LT(max_error, 1e-3 * expected.abs().max().item<double>()) << max_error;
}

TEST(Int8StaticExportTest, WritesAModelDirectoryOrExplainsWhyNot) {
  auto model = TrainedQatModel(TinyConfig(true));
  const fs::path dir = fs::path(::testing::TempDir()) / "qat_export_test";
  fs::remove_all(dir);
  ModelConfig config = TinyConfig(true);
  config.quantization.scheme = "int8_static";
  config.weights_dtype = "float16";
  const auto refused = WriteInt8StaticModel(*model, config, dir.string());
  EXPECT_FALSE(refused.ok());
  EXPECT_NE(refused.message().find("float32"), std::string::npos) << refused;
  config.weights_dtype = "float32";
  const auto written = WriteInt8StaticModel(*model, config, dir.string());
  if (!IsKnownQuantizationScheme("int8_static")) {
    EXPECT_FALSE(written.ok());  // the config would not load: refused, not written
    GTEST_SKIP() << "this build has no int8_static layer yet";
  }
  ASSERT_TRUE(written.ok()) << written;
  auto file = checkpoint::SafetensorsFile::Open((dir / "model.safetensors").string());
  ASSERT_TRUE(file.ok()) << file.status();
  const auto* q = (*file)->Find("decoder.layers.0.ffn.fc1.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->dtype, checkpoint::DType::kI8);
  const auto* s = (*file)->Find("decoder.layers.0.ffn.fc1.input_scale");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->dtype, checkpoint::DType::kF32);
  EXPECT_TRUE(s->shape.empty());
  fs::remove_all(dir);
}

// The engine's own int8_static layers on the exported directory.
TEST(Int8StaticServingTest, EngineInt8LogitsMatchFakeQuantLogits) {
  if (!IsKnownQuantizationScheme("int8_static")) {
    GTEST_SKIP() << "this build has no int8_static layer yet";
  }
  auto model = TrainedQatModel(TinyConfig(true));
  const fs::path dir = fs::path(::testing::TempDir()) / "qat_serving_test";
  fs::remove_all(dir);
  ModelConfig config = TinyConfig(true);
  config.quantization.scheme = "int8_static";
  config.quantization.params_json =
      R"({"quantize_embeddings": true, "quantize_output_projection": true})";
  ASSERT_TRUE(WriteInt8StaticModel(*model, config, dir.string()).ok());
  auto served = LoadTransformer(dir.string());
  ASSERT_TRUE(served.ok()) << served.status();
  torch::manual_seed(9);
  const auto source = torch::randint(4, 40, {4, 11});
  const auto target = torch::randint(4, 40, {4, 7});
  torch::NoGradGuard no_grad;
  const auto expected = model->Forward(source, target);
  const auto actual = (*served)->Forward(source, target);
  const double max_error = (actual - expected).abs().max().item<double>();
  EXPECT_LT(max_error, 1e-3 * expected.abs().max().item<double>()) << max_error;
  fs::remove_all(dir);
}

}  // namespace
}  // namespace quantmt::train
