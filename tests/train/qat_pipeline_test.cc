// The QAT pipeline on a tiny copy task: an FP model trained here, fine-tuned
// with fake quantization, exported by the quantmt-qat tool as int8_static
// and served through the public Translator API.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "checkpoint/safetensors.h"
#include "model/model_io.h"
#include "quantmt/engine/translator.h"
#include "train/common/trainer.h"
#include "train/compress/qat.h"

namespace quantmt::train {
namespace {

namespace fs = std::filesystem;

class QatPipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::set_num_threads(1);  // tiny model: threads only add overhead
    dir_ = new fs::path(fs::path(::testing::TempDir()) / "qat_pipeline_test");
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    // A copy task (target = source) over a small vocabulary.
    const std::vector<std::string> words = {"der", "die", "das",  "Hund", "Katze", "the",
                                            "dog", "cat", "runs", "man",  "red",   "blue"};
    uint32_t state = 777;
    auto next = [&state]() {
      state = state * 1103515245u + 12345u;
      return (state >> 16) & 0x7FFF;
    };
    auto sentence = [&](int min_words, int spread) {
      std::string text;
      const int length = min_words + static_cast<int>(next() % spread);
      for (int i = 0; i < length; ++i) text += (i > 0 ? " " : "") + words[next() % words.size()];
      return text;
    };
    {
      std::ofstream source(*dir_ / "train.de"), target(*dir_ / "train.en");
      for (int line = 0; line < 60; ++line) {
        const std::string text = sentence(2, 3);
        source << text << "\n";
        target << text << "\n";
      }
      std::ofstream corpus(*dir_ / "corpus.txt");
      for (int line = 0; line < 400; ++line) corpus << sentence(2, 6) << "\n";
    }
    const std::string command = std::string(QUANTMT_SPM_TRAIN_BIN) +
                                " --quiet --input=" + (*dir_ / "corpus.txt").string() +
                                " --model_dir=" + dir_->string() + " --vocab_size=30 > /dev/null";
    ASSERT_EQ(std::system(command.c_str()), 0);

    // The floating-point model QAT starts from.
    TrainerOptions fp = Options("fp");
    fp.tokenizer_path = (*dir_ / "spm.model").string();
    fp.model.d_model = 32;
    fp.model.encoder_layers = {{2, 64, 0}};
    fp.model.decoder_layers = {{2, 64, 0}};
    fp.model.max_source_positions = fp.model.max_target_positions = 32;
    fp.lr = 5e-3;
    fp.warmup = 10;
    fp.max_steps = 120;
    auto trainer = Trainer::Create(fp);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    ASSERT_TRUE((*trainer)->Train().ok());
    auto final_dir = (*trainer)->Export();
    ASSERT_TRUE(final_dir.ok()) << final_dir.status();
    fp_model_ = new std::string(*final_dir);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete fp_model_;
  }

  static TrainerOptions Options(const std::string& run) {
    TrainerOptions options;
    options.train_source_files = {(*dir_ / "train.de").string()};
    options.train_target_files = {(*dir_ / "train.en").string()};
    options.dev_source_file = (*dir_ / "train.de").string();
    options.dev_target_file = (*dir_ / "train.en").string();
    options.dev_lines = 10;
    options.output_dir = (*dir_ / run).string();
    fs::remove_all(options.output_dir);
    options.max_tokens = 128;
    options.validate_every = 0;
    options.save_every = 0;
    options.keep_checkpoints = 2;
    options.average_last = 2;
    options.beam = 1;
    options.log = &log_;
    return options;
  }

  static fs::path* dir_;
  static std::string* fp_model_;
  static std::ostringstream log_;
};
fs::path* QatPipelineTest::dir_ = nullptr;
std::string* QatPipelineTest::fp_model_ = nullptr;
std::ostringstream QatPipelineTest::log_;

TEST_F(QatPipelineTest, FineTuningStartsFromTheFpWeightsWithCalibratedObservers) {
  TrainerOptions options = Options("qat_in_process");
  options.export_dtype = "float32";
  options.lr = 1e-3;
  options.warmup = 5;
  options.max_steps = 15;
  QatOptions qat;
  qat.model_dir = *fp_model_;
  qat.calibration_batches = 2;
  ASSERT_TRUE(ConfigureQat(qat, &options).ok());
  auto trainer = Trainer::Create(options);
  ASSERT_TRUE(trainer.ok()) << trainer.status();

  auto fp = LoadTransformer(*fp_model_);
  ASSERT_TRUE(fp.ok());
  const auto fp_params = (*fp)->named_parameters();
  for (const auto& item : (*trainer)->model().named_parameters()) {
    ASSERT_TRUE(torch::equal(item.value(), fp_params[item.key()])) << item.key();
  }
  int observed = 0;
  for (const auto& item : (*trainer)->model().named_buffers()) {
    if (item.key().find("input_batches") == std::string::npos) continue;
    EXPECT_FLOAT_EQ(item.value().item<float>(), 2) << item.key();  // both calibration batches
    ++observed;
  }
  EXPECT_EQ(observed, 1 + 6 + 10);  // shared table, one encoder and one decoder layer
  EXPECT_NE(log_.str().find("observers calibrated on 2 batches"), std::string::npos);

  // From trained weights the loss starts far below that of a blank model
  // (about ln 30 = 3.4 nats with label smoothing) and stays there.
  auto summary = (*trainer)->Train();
  ASSERT_TRUE(summary.ok()) << summary.status();
  ASSERT_EQ(summary->losses.size(), 15u);
  for (double loss : summary->losses) {
    EXPECT_TRUE(std::isfinite(loss));
    EXPECT_LT(loss, 0.5 * std::log(30.0));
  }
  // The export averages the fake-quant checkpoints, then converts them; a
  // build without the int8_static layer refuses only the conversion.
  const auto exported = (*trainer)->Export();
  if (IsKnownQuantizationScheme("int8_static")) {
    EXPECT_TRUE(exported.ok()) << exported.status();
  } else {
    EXPECT_NE(exported.status().message().find("int8_static"), std::string::npos)
        << exported.status();
  }
}

TEST_F(QatPipelineTest, ToolExportsAnInt8StaticModelThatTranslates) {
  if (!IsKnownQuantizationScheme("int8_static")) {
    GTEST_SKIP() << "this build has no int8_static layer yet";
  }
  const fs::path output = *dir_ / "qat_tool";
  const std::string command =
      std::string(QUANTMT_QAT_BIN) + " --model=" + *fp_model_ +
      " --train_src=" + (*dir_ / "train.de").string() +
      " --train_tgt=" + (*dir_ / "train.en").string() +
      " --dev_src=" + (*dir_ / "train.de").string() +
      " --dev_tgt=" + (*dir_ / "train.en").string() +
      " --dev_lines=10 --output_dir=" + output.string() +
      " --max_steps=12 --save_every=6 --validate_every=0 --keep_checkpoints=2 --average_last=2"
      " --max_tokens=128 --lr=1e-3 --warmup=4 --beam=1 --threads=1 --calibration_batches=2"
      " 2> " +
      (*dir_ / "qat_tool.log").string();
  ASSERT_EQ(std::system(command.c_str()), 0) << std::ifstream(*dir_ / "qat_tool.log").rdbuf();

  const fs::path final_dir = output / "final";
  auto config = ReadModelConfig(final_dir.string());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->quantization.scheme, "int8_static");
  EXPECT_EQ(config->weights_dtype, "float32");
  const auto params = nlohmann::json::parse(config->quantization.params_json);
  EXPECT_EQ(params.at("quantize_embeddings"), true);
  EXPECT_EQ(params.at("source_model"), *fp_model_);
  EXPECT_EQ(params.at("tool"), "quantmt-qat");
  EXPECT_EQ(params.at("calibration").at("batches"), 2);
  EXPECT_EQ(params.at("qat").at("max_steps"), 12);
  EXPECT_NE(config->provenance_json.find("\"dev_bleu\""), std::string::npos);

  auto file = checkpoint::SafetensorsFile::Open((final_dir / "model.safetensors").string());
  ASSERT_TRUE(file.ok()) << file.status();
  const auto* table = (*file)->Find("encoder.embed_tokens.weight");
  ASSERT_NE(table, nullptr);
  EXPECT_EQ(table->dtype, checkpoint::DType::kI8);

  RuntimeOptions translator_options;
  translator_options.num_threads = 1;
  auto translator = Translator::Create(final_dir.string(), translator_options);
  ASSERT_TRUE(translator.ok()) << translator.status();
  EXPECT_EQ((*translator)->info().quantization, "int8_static");
  TranslationOptions translation;
  translation.beam_size = 2;
  auto results = (*translator)->Translate({"der Hund runs", "the red cat"}, translation);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 2u);
  for (const auto& result : *results) {
    ASSERT_FALSE(result.hypotheses.empty());
    EXPECT_TRUE(std::isfinite(result.hypotheses[0].score));
  }
}

TEST_F(QatPipelineTest, BadSetupsAreClearErrors) {
  TrainerOptions options = Options("bad");
  options.export_dtype = "float32";
  QatOptions qat;
  EXPECT_FALSE(ConfigureQat(qat, &options).ok());  // no model
  qat.model_dir = (*dir_ / "no_such_model").string();
  EXPECT_FALSE(ConfigureQat(qat, &options).ok());
  qat.model_dir = *fp_model_;
  qat.fake_quant.quantize_output_projection = false;  // tied to the quantized table
  const auto tied = ConfigureQat(qat, &options);
  EXPECT_NE(tied.message().find("quantize both or neither"), std::string::npos) << tied;
  qat.fake_quant.quantize_output_projection = true;
  qat.calibration_lines = 0;
  EXPECT_FALSE(ConfigureQat(qat, &options).ok());
  qat.calibration_lines = 100;
  options.export_dtype = "float16";
  const auto dtype = ConfigureQat(qat, &options);
  EXPECT_NE(dtype.message().find("float32"), std::string::npos) << dtype;
  options.export_dtype = "float32";
  EXPECT_TRUE(ConfigureQat(qat, &options).ok());

  // The tool: a message and exit code 1.
  const std::string command = std::string(QUANTMT_QAT_BIN) +
                              " --model=" + (*dir_ / "no_such_model").string() +
                              " --train_src=a --train_tgt=b --dev_src=c --dev_tgt=d"
                              " --output_dir=" +
                              (*dir_ / "bad_tool").string() + " --max_steps=1 2> /dev/null";
  const int status = std::system(command.c_str());
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
}

}  // namespace
}  // namespace quantmt::train
