// The public Translator on a real model directory: random weights written by
// the writer plus a SentencePiece model trained in-process.
#include "quantmt/engine/translator.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model/model_io.h"
#include "tiny_model.h"

namespace quantmt {
namespace {

namespace fs = std::filesystem;

// Programs that load LibTorch must not link SentencePiece (see
// tokenizer_loader.cc), so the tokenizer is trained by our own tool.
bool TrainTokenizer(const fs::path& corpus, const fs::path& dir, const std::string& prefix,
                    int vocab_size) {
  const std::string command = std::string(QUANTMT_SPM_TRAIN_BIN) +
                              " --quiet --input=" + corpus.string() +
                              " --model_dir=" + dir.string() + " --prefix=" + prefix +
                              " --vocab_size=" + std::to_string(vocab_size) + " > /dev/null";
  return std::system(command.c_str()) == 0;
}

void WriteCorpus(const fs::path& path) {
  const char* words[] = {"ein",     "Hund",  "die",  "Katze", "schläft", "auf",    "dem",
                         "Sofa",    "rennt", "über", "Wiese", "zwei",    "Männer", "spielen",
                         "Fußball", "ja",    "nein", "große", "Straße",  "Kinder"};
  std::ofstream out(path);
  for (int line = 0; line < 400; ++line) {
    for (int w = 0; w < 3 + line % 7; ++w) out << (w ? " " : "") << words[(line * 7 + w * 3) % 20];
    out << "\n";
  }
}

class TranslatorTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::path(::testing::TempDir()) / "translator_test_model");
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    const std::string corpus = (*dir_ / "corpus.txt").string();
    WriteCorpus(corpus);
    ASSERT_TRUE(TrainTokenizer(corpus, *dir_, "spm", 40));
    ModelConfig config = testing::TinyConfig();
    config.source_vocab_size = config.target_vocab_size = 40;
    config.max_source_positions = 32;
    auto model = testing::TinyModel(config);
    ASSERT_TRUE(SaveModelDirectory(dir_->string(), config, *model).ok());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  // Two replicas with a batch of two sentences: a call is split into
  // several batches, decoded side by side.
  std::unique_ptr<Translator> Load() {
    ModelSpec spec;
    spec.model_dir = dir_->string();
    spec.runtime.num_threads = 1;
    spec.replicas = 2;
    spec.scheduler.max_batch_sentences = 2;
    auto translator = Translator::Create(spec);
    EXPECT_TRUE(translator.ok()) << translator.status();
    return translator.ok() ? std::move(*translator) : nullptr;
  }

  static fs::path* dir_;
};
fs::path* TranslatorTest::dir_ = nullptr;

TEST_F(TranslatorTest, TranslatesEverySentenceInOrder) {
  auto translator = Load();
  ASSERT_NE(translator, nullptr);
  TranslationOptions options;
  options.beam_size = 3;
  options.num_hypotheses = 2;
  options.max_length = 8;
  const std::vector<std::string> sentences = {"ein Hund", "", "die Katze schläft auf dem Sofa",
                                              "ja"};
  auto results = translator->Translate(sentences, options);
  ASSERT_TRUE(results.ok()) << results.status();
  ASSERT_EQ(results->size(), 4u);
  EXPECT_EQ((*results)[1].hypotheses.size(), 1u);  // empty in, empty out
  EXPECT_EQ((*results)[1].hypotheses[0].text, "");
  for (size_t i : {0, 2, 3}) {
    EXPECT_EQ((*results)[i].hypotheses.size(), 2u);
    EXPECT_GT((*results)[i].source_tokens, 1);
    // The same sentence alone gives the same translation: batching and
    // sorting change nothing.
    auto alone = translator->Translate({sentences[i]}, options);
    ASSERT_TRUE(alone.ok());
    EXPECT_EQ((*alone)[0].hypotheses[0].token_ids, (*results)[i].hypotheses[0].token_ids);
    EXPECT_EQ((*alone)[0].hypotheses[0].text, (*results)[i].hypotheses[0].text);
  }
  EXPECT_EQ(translator->info().quantization, "none");
  EXPECT_EQ(translator->info().device, "cpu");
  EXPECT_GT(translator->info().num_parameters, 0);
}

TEST_F(TranslatorTest, InvalidUtf8IsRefusedNamingTheSentence) {
  auto translator = Load();
  ASSERT_NE(translator, nullptr);
  auto results = translator->Translate({"gut", "schlecht \xC3\x28"}, {});
  ASSERT_FALSE(results.ok());
  EXPECT_EQ(results.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(results.status().message().find("sentence 1"), std::string::npos);
  EXPECT_NE(results.status().message().find("UTF-8"), std::string::npos);
}

TEST_F(TranslatorTest, TooLongInputIsRefusedNotTruncated) {
  auto translator = Load();
  ASSERT_NE(translator, nullptr);
  std::string long_sentence;
  for (int i = 0; i < 40; ++i) long_sentence += "Hund Katze ";
  auto results = translator->Translate({long_sentence}, {});
  ASSERT_FALSE(results.ok());
  EXPECT_EQ(results.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(results.status().message().find("max_input_length"), std::string::npos);
  TranslationOptions options;
  options.max_input_length = 2;
  EXPECT_FALSE(translator->Translate({"die Katze schläft"}, options).ok());
}

TEST_F(TranslatorTest, BadOptionsAreRefused) {
  auto translator = Load();
  ASSERT_NE(translator, nullptr);
  auto refuse = [&](TranslationOptions options, const std::string& fragment) {
    auto results = translator->Translate({"ein Hund"}, options);
    ASSERT_FALSE(results.ok()) << fragment;
    EXPECT_EQ(results.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(results.status().message().find(fragment), std::string::npos)
        << results.status().message();
  };
  TranslationOptions options;
  options.beam_size = 0;
  refuse(options, "beam_size");
  options = {};
  options.num_hypotheses = 5;
  options.beam_size = 2;
  refuse(options, "num_hypotheses");
  options = {};
  options.max_length = 0;
  refuse(options, "max_length");
  options = {};
  options.min_length = 300;
  refuse(options, "min_length");
  options = {};
  options.length_penalty = -1;
  refuse(options, "length_penalty");
}

TEST_F(TranslatorTest, TokenIdsOutsideTheVocabularyAreRefused) {
  auto translator = Load();
  ASSERT_NE(translator, nullptr);
  EXPECT_FALSE(translator->TranslateIds({{5, 999, 3}}, {}).ok());
  EXPECT_FALSE(translator->TranslateIds({{-1, 3}}, {}).ok());
}

TEST_F(TranslatorTest, MissingOrMismatchedTokenizerIsRefused) {
  const fs::path copy = fs::path(::testing::TempDir()) / "translator_test_copy";
  fs::remove_all(copy);
  fs::create_directories(copy);
  fs::copy_file(*dir_ / "config.json", copy / "config.json");
  fs::copy_file(*dir_ / "model.safetensors", copy / "model.safetensors");
  auto missing = Translator::Create(copy.string(), {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("spm.model"), std::string::npos);

  ASSERT_TRUE(TrainTokenizer(*dir_ / "corpus.txt", copy, "spm", 45));
  auto mismatched = Translator::Create(copy.string(), {});
  ASSERT_FALSE(mismatched.ok());
  EXPECT_NE(mismatched.status().message().find("45 pieces but config.json says 40"),
            std::string::npos)
      << mismatched.status().message();
  fs::remove_all(copy);
}

TEST_F(TranslatorTest, BadComputeTypeAndDeviceAreRefused) {
  RuntimeOptions options;
  options.compute_type = "float16";
  EXPECT_EQ(Translator::Create(dir_->string(), options).status().code(),
            absl::StatusCode::kInvalidArgument);
  options.compute_type = "auto";
  options.device = DeviceKind::kCuda;
  options.device_index = 99;
  EXPECT_FALSE(Translator::Create(dir_->string(), options).ok());
}

}  // namespace
}  // namespace quantmt
