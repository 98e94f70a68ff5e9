// The DAQ pipeline end to end, CI-sized: a tiny float model trained here goes
// through `quantmt-daq quantize` and `quantmt-daq finetune`, and the results
// translate through the public Translator API.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "quantmt/engine/translator.h"
#include "train/common/trainer.h"

namespace quantmt {
namespace {

namespace fs = std::filesystem;

class DaqPipelineTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::set_num_threads(1);
    dir_ = new fs::path(fs::path(::testing::TempDir()) / "daq_pipeline_test");
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    // A copy task (target = source) over a few words.
    const std::vector<std::string> words = {"der", "die", "das",  "Hund", "Katze", "the",
                                            "dog", "cat", "runs", "man",  "red",   "blue"};
    std::ofstream source(*dir_ / "train.src"), target(*dir_ / "train.tgt"),
        corpus(*dir_ / "corpus.txt");
    uint32_t state = 77;
    auto next = [&state]() {
      state = state * 1103515245u + 12345u;
      return (state >> 16) & 0x7FFF;
    };
    for (int line = 0; line < 300; ++line) {
      std::string sentence;
      const int length = 2 + static_cast<int>(next() % 4);
      for (int i = 0; i < length; ++i) sentence += (i > 0 ? " " : "") + words[next() % 12];
      corpus << sentence << "\n";
      if (line < 60) {
        source << sentence << "\n";
        target << sentence << "\n";
      }
    }
    source.close();
    target.close();
    corpus.close();
    const std::string spm = std::string(QUANTMT_SPM_TRAIN_BIN) +
                            " --quiet --input=" + (*dir_ / "corpus.txt").string() +
                            " --model_dir=" + dir_->string() + " --vocab_size=30 > /dev/null";
    ASSERT_EQ(std::system(spm.c_str()), 0);

    train::TrainerOptions options;
    options.train_source_files = {(*dir_ / "train.src").string()};
    options.train_target_files = {(*dir_ / "train.tgt").string()};
    options.tokenizer_path = (*dir_ / "spm.model").string();
    options.output_dir = (*dir_ / "fp").string();
    options.model.d_model = 32;
    options.model.encoder_layers = {{2, 64, 0}};
    options.model.decoder_layers = {{2, 64, 0}};
    options.model.max_source_positions = options.model.max_target_positions = 32;
    options.lr = 5e-3;
    options.warmup = 10;
    options.max_tokens = 128;
    options.max_steps = 30;
    options.validate_every = options.save_every = 0;
    options.keep_checkpoints = options.average_last = 1;
    std::ostringstream log;
    options.log = &log;
    auto trainer = train::Trainer::Create(options);
    ASSERT_TRUE(trainer.ok()) << trainer.status();
    ASSERT_TRUE((*trainer)->Train().ok());
    ASSERT_TRUE((*trainer)->Export().ok());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static int Daq(const std::string& arguments) {
    const std::string command = std::string(QUANTMT_DAQ_BIN) + " " + arguments + " > " +
                                (*dir_ / "daq.log").string() + " 2>&1";
    const int status = std::system(command.c_str());
    if (status != 0) {
      std::ifstream log(*dir_ / "daq.log");
      std::cerr << log.rdbuf();
    }
    return status;
  }

  static std::string Model() { return (*dir_ / "fp" / "final").string(); }

  // Loads `model_dir` with the public API and translates two sentences.
  static void ExpectTranslates(const std::string& model_dir) {
    auto translator = Translator::Create(model_dir, {});
    ASSERT_TRUE(translator.ok()) << translator.status();
    EXPECT_EQ((*translator)->info().quantization, "daq");
    TranslationOptions options;
    options.beam_size = 2;
    options.max_length = 10;
    auto results = (*translator)->Translate({"der Hund", "the red cat runs"}, options);
    ASSERT_TRUE(results.ok()) << results.status();
    ASSERT_EQ(results->size(), 2u);
    for (const auto& result : *results) EXPECT_EQ(result.hypotheses.size(), 1u);
  }

  static nlohmann::json Quantization(const std::string& model_dir) {
    std::ifstream in(fs::path(model_dir) / "config.json");
    return nlohmann::json::parse(in)["quantization"];
  }

  static fs::path* dir_;
};
fs::path* DaqPipelineTest::dir_ = nullptr;

TEST_F(DaqPipelineTest, QuantizeWritesATranslatableCheckpoint) {
  const std::string out = (*dir_ / "ptq").string();
  ASSERT_EQ(Daq("quantize --model " + Model() + " --output " + out +
                " --buckets 2 --centroids 16 --n-iter 3"),
            0);
  ExpectTranslates(out);
  const auto q = Quantization(out);
  EXPECT_EQ(q["scheme"], "daq");
  EXPECT_EQ(q["buckets"], 2);
  EXPECT_EQ(q["source_model"], Model());
  EXPECT_TRUE(q["summary"]["relative_reconstruction_error"].contains("feed_forward"));
}

TEST_F(DaqPipelineTest, FourBitCodesWithInt8Centroids) {
  const std::string out = (*dir_ / "ptq4").string();
  ASSERT_EQ(Daq("quantize --model " + Model() + " --output " + out +
                " --bits 4 --centroid-dtype int8 --n-iter 3"),
            0);
  ExpectTranslates(out);
  EXPECT_EQ(Quantization(out)["bits"], 4);
}

TEST_F(DaqPipelineTest, RefusesBadFlags) {
  const std::string out = (*dir_ / "bad").string();
  EXPECT_NE(Daq("quantize --model " + Model() + " --output " + out + " --bits 3"), 0);
  EXPECT_NE(Daq("quantize --model " + Model() + " --output " + out + " --bits 4 --centroids 17"),
            0);
  EXPECT_NE(Daq("quantize --model " + (*dir_ / "missing").string() + " --output " + out), 0);
}

TEST_F(DaqPipelineTest, FinetuneRunsTheStagesAndExports) {
  const std::string out = (*dir_ / "finetune").string();
  const std::string data = " --train_src " + (*dir_ / "train.src").string() + " --train_tgt " +
                           (*dir_ / "train.tgt").string() + " --dev_src " +
                           (*dir_ / "train.src").string() + " --dev_tgt " +
                           (*dir_ / "train.tgt").string() + " --dev_lines 4";
  const std::string flags =
      " --steps-noise 3 --steps-ffn 2 --steps-embedding 2 --steps-attention 2 --noise-rate 0.2"
      " --centroids 16 --n-iter 2 --max_tokens 128 --validate_every 0 --save_every 0 --beam 1";
  ASSERT_EQ(Daq("finetune --model " + Model() + " --output " + out + data + flags), 0);
  const std::string final_dir = (fs::path(out) / "stage3-attention" / "final").string();
  ExpectTranslates(final_dir);
  const auto q = Quantization(final_dir);
  EXPECT_EQ(q["recipe"]["stages"].size(), 4u);
  EXPECT_EQ(q["recipe"]["quant_noise_rate"], 0.2);
  // A second run finds every stage done and exports nothing new.
  ASSERT_EQ(Daq("finetune --model " + Model() + " --output " + out + data + flags), 0);
}

}  // namespace
}  // namespace quantmt
