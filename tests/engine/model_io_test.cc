// Model directories: save/load round trip, and every mismatch between the
// weights file and config.json refused with an error naming file and tensor.
#include "model/model_io.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "tiny_model.h"

namespace quantmt {
namespace {

namespace fs = std::filesystem;
using testing::TinyConfig;
using testing::TinyModel;

class ModelIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("model_io_" +
            std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // Saves a model for `config`, then rewrites config.json with `edited`.
  void SaveThenEditConfig(const ModelConfig& config, const ModelConfig& edited) {
    auto model = TinyModel(config);
    ASSERT_TRUE(SaveModelDirectory(dir_.string(), config, *model).ok());
    std::ofstream(dir_ / "config.json", std::ios::trunc) << SerializeModelConfig(edited);
  }

  void ExpectLoadError(const std::string& fragment) {
    auto loaded = LoadTransformer(dir_.string());
    ASSERT_FALSE(loaded.ok());
    EXPECT_NE(loaded.status().message().find(fragment), std::string::npos)
        << loaded.status().message();
  }

  fs::path dir_;
};

TEST_F(ModelIoTest, RoundTripKeepsEveryParameter) {
  for (const char* dtype : {"float32", "float16", "bfloat16"}) {
    ModelConfig config =
        TinyConfig(NormPosition::kPost, Activation::kGelu, PositionEncoding::kLearned);
    config.tie_output_projection = false;
    config.weights_dtype = dtype;
    auto model = TinyModel(config);
    ASSERT_TRUE(SaveModelDirectory(dir_.string(), config, *model).ok());
    auto loaded = LoadTransformer(dir_.string());
    ASSERT_TRUE(loaded.ok()) << loaded.status();
    auto original = model->named_parameters();
    auto restored = (*loaded)->named_parameters();
    ASSERT_EQ(original.size(), restored.size());
    const auto type = std::string(dtype) == "float16"    ? torch::kFloat16
                      : std::string(dtype) == "bfloat16" ? torch::kBFloat16
                                                         : torch::kFloat32;
    for (const auto& item : original) {
      // Exact after the same rounding to the storage dtype.
      auto expected = item.value().to(type).to(torch::kFloat32);
      EXPECT_TRUE(torch::equal(expected, restored[item.key()])) << dtype << " " << item.key();
    }
  }
}

TEST_F(ModelIoTest, ShapeThatDisagreesWithConfigIsRefused) {
  ModelConfig config = TinyConfig();
  ModelConfig edited = config;
  edited.decoder_layers[1].ffn_dim = 41;
  SaveThenEditConfig(config, edited);
  ExpectLoadError(
      "decoder.layers.1.ffn.fc1.weight' has shape [40, 32] but config.json implies [41, 32]");
}

TEST_F(ModelIoTest, MissingTensorIsRefused) {
  ModelConfig config = TinyConfig();
  ModelConfig edited = config;
  edited.tie_output_projection = false;  // now expects decoder.output_projection.weight
  SaveThenEditConfig(config, edited);
  ExpectLoadError("model.safetensors: tensor 'decoder.output_projection.weight' is missing");
}

TEST_F(ModelIoTest, ExtraTensorIsRefused) {
  ModelConfig config = TinyConfig();
  config.shared_embeddings = false;
  ModelConfig edited = config;
  edited.shared_embeddings = true;  // the file still has decoder.embed_tokens.weight
  SaveThenEditConfig(config, edited);
  ExpectLoadError("unexpected tensor(s) for this config.json: 'decoder.embed_tokens.weight'");
}

TEST_F(ModelIoTest, StorageDtypeThatDisagreesWithConfigIsRefused) {
  ModelConfig config = TinyConfig();
  ModelConfig edited = config;
  edited.weights_dtype = "float16";
  SaveThenEditConfig(config, edited);
  ExpectLoadError("is F32 but config.json declares weights.dtype float16");
}

TEST_F(ModelIoTest, UnknownQuantizationSchemeIsRefused) {
  ModelConfig config = TinyConfig();
  SaveThenEditConfig(config, config);
  std::ifstream in(dir_ / "config.json");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string from = "\"scheme\": \"none\"";
  ASSERT_NE(text.find(from), std::string::npos);
  text.replace(text.find(from), from.size(), "\"scheme\": \"int2_magic\"");
  std::ofstream(dir_ / "config.json", std::ios::trunc) << text;
  ExpectLoadError("quantization.scheme 'int2_magic' is not supported");
}

TEST_F(ModelIoTest, TruncatedWeightsFileIsRefused) {
  ModelConfig config = TinyConfig();
  SaveThenEditConfig(config, config);
  const fs::path weights = dir_ / "model.safetensors";
  fs::resize_file(weights, fs::file_size(weights) - 100);
  ExpectLoadError("model.safetensors");
}

TEST_F(ModelIoTest, MissingDirectoryIsNotFound) {
  auto loaded = LoadTransformer((dir_ / "nope").string());
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace quantmt
