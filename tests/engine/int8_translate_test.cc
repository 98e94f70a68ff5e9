// quantmt-quantize end to end: a tiny float model directory quantized by the
// tool loads through the public Translator and translates like the float
// model on most tokens.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model/dequantize.h"
#include "model/model_io.h"
#include "quantmt/engine/translator.h"
#include "tiny_model.h"

namespace quantmt {
namespace {

namespace fs = std::filesystem;

bool RunCommand(const std::string& command) {
  return std::system((command + " > /dev/null").c_str()) == 0;
}

class Int8TranslateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::path(::testing::TempDir()) / "int8_translate_test");
    fs::remove_all(*dir_);
    fs::create_directories(*dir_ / "float");
    std::ofstream corpus(*dir_ / "corpus.txt");
    const char* words[] = {"ein",   "Hund", "die",    "Katze",   "schläft",
                           "auf",   "dem",  "Sofa",   "rennt",   "über",
                           "Wiese", "zwei", "Männer", "spielen", "Fußball"};
    for (int line = 0; line < 300; ++line) {
      for (int w = 0; w < 2 + line % 6; ++w) corpus << (w ? " " : "") << words[(line * 5 + w) % 15];
      corpus << "\n";
    }
    corpus.close();
    // Programs that load LibTorch must not link SentencePiece: our tool trains it.
    ASSERT_TRUE(RunCommand(
        std::string(QUANTMT_SPM_TRAIN_BIN) + " --quiet --input=" + (*dir_ / "corpus.txt").string() +
        " --model_dir=" + (*dir_ / "float").string() + " --prefix=spm --vocab_size=40"));
    ModelConfig config = testing::TinyConfig();
    config.source_vocab_size = config.target_vocab_size = 40;
    // Larger weights than the initializer's make sharper, less tied logits,
    // as a trained model has.
    auto model = testing::TinyModel(config, 11);
    {
      torch::NoGradGuard no_grad;
      for (auto& parameter : model->parameters()) {
        if (parameter.dim() == 2) parameter.mul_(2.0);
      }
    }
    ASSERT_TRUE(SaveModelDirectory((*dir_ / "float").string(), config, *model).ok());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static std::vector<std::vector<int>> Translate(const std::string& model_dir,
                                                 const std::vector<std::string>& sentences,
                                                 RuntimeOptions options = {}) {
    options.num_threads = 2;
    auto translator = Translator::Create(model_dir, options);
    EXPECT_TRUE(translator.ok()) << translator.status();
    if (!translator.ok()) return {};
    TranslationOptions greedy;
    greedy.beam_size = 1;
    greedy.max_length = 12;
    auto results = (*translator)->Translate(sentences, greedy);
    EXPECT_TRUE(results.ok()) << results.status();
    std::vector<std::vector<int>> tokens;
    for (const auto& result : *results) tokens.push_back(result.hypotheses[0].token_ids);
    return tokens;
  }

  // The float model quantized by the tool, once per test program.
  static std::string QuantizedDir() {
    const fs::path out = *dir_ / "int8";
    if (!fs::exists(out / "model.safetensors")) {
      EXPECT_TRUE(RunCommand(std::string(QUANTMT_QUANTIZE_BIN) + " --model " +
                             (*dir_ / "float").string() + " --output " + out.string()));
    }
    return out.string();
  }

  static const std::vector<std::string>& Sentences() {
    static const std::vector<std::string> sentences = {"ein Hund rennt über die Wiese",
                                                       "die Katze schläft auf dem Sofa",
                                                       "zwei Männer spielen",
                                                       "Fußball",
                                                       "ein Hund",
                                                       "die Katze rennt",
                                                       "dem Sofa über",
                                                       "Männer spielen Fußball"};
    return sentences;
  }

  static fs::path* dir_;
};
fs::path* Int8TranslateTest::dir_ = nullptr;

TEST_F(Int8TranslateTest, QuantizedModelTranslatesLikeTheFloatModel) {
  const std::string out = QuantizedDir();
  ASSERT_TRUE(fs::exists(fs::path(out) / "spm.model"));
  auto config = ReadModelConfig(out);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->quantization.scheme, "int8_dynamic");
  EXPECT_NE(config->quantization.params_json.find("\"tool\":\"quantmt-quantize\""),
            std::string::npos);
  EXPECT_LT(fs::file_size(fs::path(out) / "model.safetensors"),
            fs::file_size(*dir_ / "float" / "model.safetensors") / 2);

  const std::vector<std::string>& sentences = Sentences();
  auto reference = Translate((*dir_ / "float").string(), sentences);
  auto quantized = Translate(out, sentences);
  ASSERT_EQ(reference.size(), quantized.size());
  // Position-wise agreement of the greedy outputs until the first
  // difference (after which a decoder follows its own prefix).
  size_t agreeing = 0, total = 0;
  for (size_t i = 0; i < reference.size(); ++i) {
    total += reference[i].size();
    for (size_t t = 0; t < std::min(reference[i].size(), quantized[i].size()); ++t) {
      if (reference[i][t] != quantized[i][t]) break;
      ++agreeing;
    }
  }
  ASSERT_GT(total, 0u);
  std::cout << "int8 agrees with float on " << agreeing << "/" << total << " tokens\n";
  EXPECT_GE(agreeing * 10, total * 7);
}

// On a GPU an int8 model runs as its float twin (model/dequantize.h) on the
// CUDA graph decoder: the same greedy tokens as the twin, saved as a float
// checkpoint, gives on the CPU.
TEST_F(Int8TranslateTest, OnTheGpuTranslatesAsItsFloatTwinOnTheCpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::string int8_dir = QuantizedDir();
  const fs::path twin_dir = *dir_ / "twin";
  fs::create_directories(twin_dir);
  fs::copy_file(fs::path(int8_dir) / "spm.model", twin_dir / "spm.model",
                fs::copy_options::overwrite_existing);
  auto int8_model = LoadTransformer(int8_dir);
  ASSERT_TRUE(int8_model.ok()) << int8_model.status();
  auto twin = DequantizeTransformer(**int8_model);
  ASSERT_TRUE(twin.ok()) << twin.status();
  ASSERT_TRUE(SaveModelDirectory(twin_dir.string(), (*twin)->config(), **twin).ok());

  RuntimeOptions gpu;
  gpu.device = DeviceKind::kCuda;
  gpu.compute_type = "float32";
  auto translator = Translator::Create(int8_dir, gpu);
  ASSERT_TRUE(translator.ok()) << translator.status();
  EXPECT_EQ((*translator)->info().quantization, "int8_dynamic");
  EXPECT_EQ((*translator)->info().device, "cuda:0");
  EXPECT_EQ(Translate(int8_dir, Sentences(), gpu), Translate(twin_dir.string(), Sentences()));
}

TEST_F(Int8TranslateTest, ToolRefusesAModelThatIsNotThere) {
  EXPECT_FALSE(RunCommand(std::string(QUANTMT_QUANTIZE_BIN) + " --model " +
                          (*dir_ / "missing").string() + " --output " + (*dir_ / "x").string() +
                          " 2> /dev/null"));
}

}  // namespace
}  // namespace quantmt
