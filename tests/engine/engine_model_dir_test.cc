// The Engine on real model directories: text in, text out through the
// SentencePiece plugin, the same translations as the Translator, several
// models at once, and model states reported as they are.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "model/model_io.h"
#include "quantmt/engine/engine.h"
#include "quantmt/engine/translator.h"
#include "tiny_model.h"

namespace quantmt {
namespace {

namespace fs = std::filesystem;

class EngineModelDirTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::path(::testing::TempDir()) / "engine_model_dir_test");
    fs::remove_all(*dir_);
    fs::create_directories(*dir_);
    const fs::path corpus = *dir_ / "corpus.txt";
    {
      const char* words[] = {"ein", "Hund", "die",   "Katze", "schläft", "auf",
                             "dem", "Sofa", "rennt", "über",  "Wiese",   "zwei"};
      std::ofstream out(corpus);
      for (int line = 0; line < 300; ++line) {
        for (int w = 0; w < 2 + line % 5; ++w) out << (w ? " " : "") << words[(line + w * 5) % 12];
        out << "\n";
      }
    }
    // Programs that load LibTorch must not link SentencePiece: our tool
    // trains the tokenizer.
    const std::string command =
        std::string(QUANTMT_SPM_TRAIN_BIN) + " --quiet --input=" + corpus.string() +
        " --model_dir=" + dir_->string() + " --prefix=spm --vocab_size=40 > /dev/null";
    ASSERT_EQ(std::system(command.c_str()), 0);
    ModelConfig config = testing::TinyConfig();
    config.source_vocab_size = config.target_vocab_size = 40;
    config.max_source_positions = 32;
    ASSERT_TRUE(SaveModelDirectory(dir_->string(), config, *testing::TinyModel(config)).ok());
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }

  static ModelSpec Spec(const std::string& name) {
    ModelSpec spec;
    spec.name = name;
    spec.model_dir = dir_->string();
    spec.runtime.num_threads = 1;
    spec.replicas = 1;
    return spec;
  }

  static fs::path* dir_;
};
fs::path* EngineModelDirTest::dir_ = nullptr;

TEST_F(EngineModelDirTest, TranslatesTextLikeTheTranslator) {
  auto engine = Engine::Create({});
  ASSERT_TRUE(engine->LoadModel(Spec("de-en")).ok());
  RuntimeOptions translator_options;
  translator_options.num_threads = 1;
  auto translator = Translator::Create(dir_->string(), translator_options);
  ASSERT_TRUE(translator.ok()) << translator.status();

  TranslationRequest request;
  request.sentences = {"ein Hund", "", "die Katze schläft auf dem Sofa", "zwei"};
  request.options.beam_size = 3;
  request.options.num_hypotheses = 2;
  request.options.max_length = 8;
  auto expected = (*translator)->Translate(request.sentences, request.options);
  ASSERT_TRUE(expected.ok());
  std::vector<std::string> streamed(4);
  request.on_token = [&](const TokenEvent& event) {
    if (event.finished) streamed[event.sentence_index] = event.text;
  };
  RequestOutcome outcome = engine->TranslateSync("de-en", std::move(request));
  ASSERT_TRUE(outcome.results.ok()) << outcome.results.status();
  ASSERT_EQ(outcome.results->size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    const auto& got = (*outcome.results)[i].hypotheses;
    const auto& want = (*expected)[i].hypotheses;
    ASSERT_EQ(got.size(), want.size()) << i;
    for (size_t k = 0; k < got.size(); ++k) {
      EXPECT_EQ(got[k].token_ids, want[k].token_ids);
      EXPECT_EQ(got[k].text, want[k].text);
    }
    if (i != 1) {
      EXPECT_EQ(streamed[i], got[0].text);
    }
  }
}

TEST_F(EngineModelDirTest, ServesSeveralModelsAndReportsThem) {
  auto engine = Engine::Create({});
  ASSERT_TRUE(engine->LoadModel(Spec("a")).ok());
  ModelSpec b = Spec("b");
  b.replicas = 2;
  ASSERT_TRUE(engine->LoadModel(b).ok());
  for (const char* name : {"a", "b"}) {
    TranslationRequest request;
    request.sentences = {"die Katze"};
    EXPECT_TRUE(engine->TranslateSync(name, request).results.ok()) << name;
  }
  auto models = engine->ListModels();
  ASSERT_EQ(models.size(), 2u);
  EXPECT_EQ(models[1].name, "b");
  EXPECT_EQ(models[1].replicas, 2);
  EXPECT_EQ(models[1].threads_per_replica, 1);
  EXPECT_EQ(std::string(ModelStateName(models[0].state)), "ready");
  EXPECT_EQ(models[0].info.quantization, "none");
  EXPECT_EQ(models[0].info.device, "cpu");
  EXPECT_GT(models[0].info.weights_file_bytes, 0);
  EXPECT_GT(models[0].weights_bytes, 0);

  TranslationRequest bad;
  bad.sentences = {"gut", "schlecht \xC3\x28"};
  auto refused = engine->TranslateSync("a", bad).results.status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(refused.message().find("sentence 1"), std::string::npos);

  ASSERT_TRUE(engine->UnloadModel("a").ok());
  EXPECT_EQ(engine->ListModels().size(), 1u);
  TranslationRequest request;
  request.sentences = {"ein Hund"};
  EXPECT_EQ(engine->TranslateSync("a", request).results.status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(EngineModelDirTest, MissingDirectoryFailsToLoadWithItsName) {
  auto engine = Engine::Create({});
  ModelSpec spec = Spec("missing");
  spec.model_dir = (*dir_ / "nowhere").string();
  absl::Status status = engine->LoadModel(spec);
  EXPECT_FALSE(status.ok());
  EXPECT_NE(status.message().find("nowhere"), std::string::npos) << status;
  auto model = engine->GetModel("missing");
  ASSERT_TRUE(model.ok());
  EXPECT_EQ(model->state, ModelState::kFailed);
  EXPECT_FALSE(model->last_error.empty());
}

}  // namespace
}  // namespace quantmt
