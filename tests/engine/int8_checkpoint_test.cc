// INT8 model directories: quantize, save, load back; every kind of corrupt
// int8 checkpoint refused with a message that says what is wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "model/int8_convert.h"
#include "model/int8_linear.h"
#include "model/model_io.h"
#include "tiny_model.h"

namespace quantmt {
namespace {

namespace fs = std::filesystem;
using checkpoint::DType;

class Int8CheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("int8_checkpoint_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Quantizes the tiny model to `scheme` and writes it to dir_.
  void SaveQuantized(const std::string& scheme, const std::string& weights_dtype = "float32") {
    config_ = testing::TinyConfig();
    config_.weights_dtype = weights_dtype;
    float_model_ = testing::TinyModel(config_);
    config_.quantization = {scheme, R"({"tool": "test"})"};
    auto quantized = QuantizeTransformer(*float_model_, config_.quantization);
    ASSERT_TRUE(quantized.ok()) << quantized.status();
    quantized_ = *quantized;
    ASSERT_TRUE(SaveModelDirectory(dir_.string(), config_, *quantized_).ok());
  }

  // Rewrites the weights file: `edit` may change, drop (return false) or add
  // tensors; `storage` keeps replaced bytes alive.
  void RewriteWeights(const std::function<void(std::vector<checkpoint::TensorToWrite>*,
                                               std::vector<std::vector<uint8_t>>*)>& edit) {
    const std::string path = (dir_ / "model.safetensors").string();
    auto file = checkpoint::SafetensorsFile::Open(path);
    ASSERT_TRUE(file.ok()) << file.status();
    std::vector<std::vector<uint8_t>> storage;
    std::vector<checkpoint::TensorToWrite> tensors;
    for (const auto& view : (*file)->tensors()) {
      storage.emplace_back(view.data, view.data + view.nbytes);
      tensors.push_back({view.name, view.dtype, view.shape, nullptr, view.nbytes});
    }
    storage.reserve(storage.size() + 8);  // edits may add; data pointers set below
    edit(&tensors, &storage);
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].data == nullptr) tensors[i].data = storage[i].data();
    }
    file->reset();
    ASSERT_TRUE(checkpoint::WriteSafetensors(path, tensors).ok());
  }

  // Replaces tensor `name` with float32 `values` of `shape` and `dtype`.
  void ReplaceWithFloats(const std::string& name, DType dtype, std::vector<int64_t> shape,
                         std::vector<float> values) {
    RewriteWeights([&](auto* tensors, auto* storage) {
      for (size_t i = 0; i < tensors->size(); ++i) {
        if ((*tensors)[i].name != name) continue;
        auto& bytes = (*storage)[i];
        bytes.assign(reinterpret_cast<uint8_t*>(values.data()),
                     reinterpret_cast<uint8_t*>(values.data() + values.size()));
        if (dtype == DType::kF16) bytes.resize(values.size() * 2);
        (*tensors)[i] = {name, dtype, shape, nullptr, bytes.size()};
        return;
      }
      FAIL() << "no tensor " << name;
    });
  }

  void ExpectLoadError(const std::string& fragment) {
    auto loaded = LoadTransformer(dir_.string());
    ASSERT_FALSE(loaded.ok()) << "loaded a corrupt checkpoint";
    EXPECT_NE(loaded.status().message().find(fragment), std::string::npos)
        << loaded.status().message();
  }

  fs::path dir_;
  ModelConfig config_;
  std::shared_ptr<Transformer> float_model_, quantized_;
};

constexpr const char* kFc1 = "encoder.layers.0.ffn.fc1";

TEST_F(Int8CheckpointTest, RoundTripKeepsCodesScalesAndOutputs) {
  SaveQuantized("int8_dynamic");
  auto file = checkpoint::SafetensorsFile::Open((dir_ / "model.safetensors").string());
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->Find(std::string(kFc1) + ".weight")->dtype, DType::kI8);
  EXPECT_EQ((*file)->Find(std::string(kFc1) + ".weight_scale")->dtype, DType::kF32);
  EXPECT_EQ((*file)->Find("encoder.embed_tokens.weight")->dtype, DType::kI8);

  auto loaded = LoadTransformer(dir_.string());
  ASSERT_TRUE(loaded.ok()) << loaded.status();
  EXPECT_EQ((*loaded)->config().quantization.scheme, "int8_dynamic");
  auto expected = quantized_->named_parameters();
  for (const auto& item : (*loaded)->named_parameters()) {
    EXPECT_TRUE(torch::equal(item.value(), expected[item.key()])) << item.key();
  }
  // Teacher-forced logits of the int8 model follow the float model's.
  torch::NoGradGuard no_grad;
  PrepareForInference(**loaded);
  auto source = torch::randint(4, 50, {3, 9});
  auto target = torch::randint(4, 50, {3, 7});
  auto reference = float_model_->Forward(source, target);
  auto actual = (*loaded)->Forward(source, target);
  const double error = ((actual - reference).norm() / reference.norm()).item<double>();
  EXPECT_LT(error, 0.1);
  const double agreement =
      actual.argmax(-1).eq(reference.argmax(-1)).to(torch::kFloat).mean().item<double>();
  EXPECT_GT(agreement, 0.8);
}

TEST_F(Int8CheckpointTest, Float16StorageKeepsScalesInFloat32) {
  SaveQuantized("int8_static", "float16");
  auto file = checkpoint::SafetensorsFile::Open((dir_ / "model.safetensors").string());
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->Find(std::string(kFc1) + ".input_scale")->dtype, DType::kF32);
  EXPECT_EQ((*file)->Find(std::string(kFc1) + ".bias")->dtype, DType::kF16);
  file->reset();
  auto loaded = LoadTransformer(dir_.string());
  EXPECT_TRUE(loaded.ok()) << loaded.status();
}

TEST_F(Int8CheckpointTest, UnquantizedEmbeddingsStayFloat) {
  config_ = testing::TinyConfig();
  config_.tie_output_projection = false;
  float_model_ = testing::TinyModel(config_);
  config_.quantization = {"int8_dynamic",
                          R"({"quantize_embeddings": false, "quantize_output_projection": false})"};
  auto quantized = QuantizeTransformer(*float_model_, config_.quantization);
  ASSERT_TRUE(quantized.ok()) << quantized.status();
  ASSERT_TRUE(SaveModelDirectory(dir_.string(), config_, **quantized).ok());
  auto file = checkpoint::SafetensorsFile::Open((dir_ / "model.safetensors").string());
  ASSERT_TRUE(file.ok());
  EXPECT_EQ((*file)->Find("encoder.embed_tokens.weight")->dtype, DType::kF32);
  EXPECT_EQ((*file)->Find("decoder.output_projection.weight")->dtype, DType::kF32);
  EXPECT_EQ((*file)->Find("encoder.embed_tokens.weight_scale"), nullptr);
  file->reset();
  EXPECT_TRUE(LoadTransformer(dir_.string()).ok());
}

TEST_F(Int8CheckpointTest, MissingScaleIsRefused) {
  SaveQuantized("int8_dynamic");
  RewriteWeights([](auto* tensors, auto* storage) {
    for (size_t i = 0; i < tensors->size(); ++i) {
      if ((*tensors)[i].name == std::string(kFc1) + ".weight_scale") {
        tensors->erase(tensors->begin() + i);
        storage->erase(storage->begin() + i);
        return;
      }
    }
  });
  ExpectLoadError("tensor 'encoder.layers.0.ffn.fc1.weight_scale' is missing");
}

TEST_F(Int8CheckpointTest, ScaleOfWrongShapeIsRefused) {
  SaveQuantized("int8_dynamic");
  ReplaceWithFloats(std::string(kFc1) + ".weight_scale", DType::kF32, {3}, {1, 1, 1});
  ExpectLoadError("has shape [3] but config.json implies [64]");
}

TEST_F(Int8CheckpointTest, Float16ScaleIsRefused) {
  SaveQuantized("int8_dynamic");
  ReplaceWithFloats(std::string(kFc1) + ".weight_scale", DType::kF16, {64},
                    std::vector<float>(64, 1.0f));
  ExpectLoadError("quantization scales are F32");
}

TEST_F(Int8CheckpointTest, BadScaleValuesAreRefused) {
  for (float bad : {0.0f, -0.5f, std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity()}) {
    SaveQuantized("int8_dynamic");
    std::vector<float> scales(64, 0.01f);
    scales[5] = bad;
    ReplaceWithFloats(std::string(kFc1) + ".weight_scale", DType::kF32, {64}, scales);
    ExpectLoadError("at index 5; quantization scales must be positive and finite");
  }
}

TEST_F(Int8CheckpointTest, FloatWeightInInt8LayerIsRefused) {
  SaveQuantized("int8_dynamic");
  ReplaceWithFloats(std::string(kFc1) + ".weight", DType::kF32, {64, 32},
                    std::vector<float>(64 * 32, 0.5f));
  ExpectLoadError("is F32 but this layer expects I8 (is quantization.scheme");
}

TEST_F(Int8CheckpointTest, FloatCheckpointUnderInt8SchemeIsRefused) {
  config_ = testing::TinyConfig();
  ASSERT_TRUE(SaveModelDirectory(dir_.string(), config_, *testing::TinyModel(config_)).ok());
  config_.quantization = {"int8_dynamic", "{}"};
  std::ofstream(dir_ / "config.json", std::ios::trunc) << SerializeModelConfig(config_);
  ExpectLoadError("but this layer expects I8");
}

TEST_F(Int8CheckpointTest, MinusOneTwentyEightIsRefused) {
  SaveQuantized("int8_dynamic");
  RewriteWeights([](auto* tensors, auto* storage) {
    for (size_t i = 0; i < tensors->size(); ++i) {
      if ((*tensors)[i].name == std::string(kFc1) + ".weight") (*storage)[i][17] = 0x80;
    }
  });
  ExpectLoadError("holds -128; int8 weights are symmetric");
}

TEST_F(Int8CheckpointTest, StaticSchemeWithoutInputScalesIsRefused) {
  SaveQuantized("int8_dynamic");
  config_.quantization.scheme = "int8_static";
  std::ofstream(dir_ / "config.json", std::ios::trunc) << SerializeModelConfig(config_);
  ExpectLoadError(".input_scale' is missing");
}

TEST_F(Int8CheckpointTest, InputScaleInDynamicCheckpointIsRefused) {
  SaveQuantized("int8_static");
  config_.quantization.scheme = "int8_dynamic";
  std::ofstream(dir_ / "config.json", std::ios::trunc) << SerializeModelConfig(config_);
  ExpectLoadError("unexpected tensor(s) for this config.json");
}

TEST_F(Int8CheckpointTest, WrongParameterTypeIsRefused) {
  SaveQuantized("int8_dynamic");
  config_.quantization.params_json = R"({"quantize_embeddings": 1})";
  std::ofstream(dir_ / "config.json", std::ios::trunc) << SerializeModelConfig(config_);
  ExpectLoadError("quantize_embeddings: expected true or false");
}

TEST_F(Int8CheckpointTest, FloatModelIsTheOnlyValidSource) {
  SaveQuantized("int8_dynamic");
  auto again = QuantizeTransformer(*quantized_, config_.quantization);
  ASSERT_FALSE(again.ok());
  EXPECT_NE(again.status().message().find("already quantized"), std::string::npos);
}

}  // namespace
}  // namespace quantmt
