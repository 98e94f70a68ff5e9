// Tokenizer tests on a tiny model trained in-process (tiny_spm_model.h), so
// they never skip; one extra test uses real captions when QUANTMT_DATA_DIR
// is set.
#include "quantmt/engine/tokenizer.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "tiny_spm_model.h"

namespace quantmt {
namespace {

namespace fs = std::filesystem;

void WriteFile(const std::string& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(::testing::TempDir() + "quantmt_tokenizer_test_" +
                           std::to_string(::getpid()));
    fs::create_directories(*dir_);
    const std::string corpus = *dir_ + "/corpus.txt";
    ASSERT_TRUE(testing::WriteTinyCorpus(corpus));
    std::string error;
    ASSERT_TRUE(testing::TrainSpmModel(corpus, *dir_ + "/tiny", 100, &error)) << error;
  }
  static void TearDownTestSuite() {
    std::error_code ec;
    fs::remove_all(*dir_, ec);
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    std::string error;
    tok_ = Tokenizer::Load(model_path(), &error);
    ASSERT_NE(tok_, nullptr) << error;
  }

  static std::string model_path() { return *dir_ + "/tiny.model"; }
  static std::string dir() { return *dir_; }

  std::vector<int> EncodeOk(const std::string& text) {
    std::vector<int> ids;
    std::string error;
    EXPECT_TRUE(tok_->Encode(text, &ids, &error)) << error;
    return ids;
  }

  static std::string* dir_;
  std::unique_ptr<Tokenizer> tok_;
};

std::string* TokenizerTest::dir_ = nullptr;

TEST_F(TokenizerTest, VocabularyAndSpecialIds) {
  EXPECT_EQ(tok_->vocab_size(), 100);
  EXPECT_EQ(tok_->pad_id(), 0);
  EXPECT_EQ(tok_->unk_id(), 1);
  EXPECT_EQ(tok_->bos_id(), 2);
  EXPECT_EQ(tok_->eos_id(), 3);
  EXPECT_EQ(tok_->IdToPiece(0), "<pad>");
  EXPECT_EQ(tok_->IdToPiece(1), "<unk>");
  EXPECT_EQ(tok_->IdToPiece(2), "<s>");
  EXPECT_EQ(tok_->IdToPiece(3), "</s>");
  EXPECT_EQ(tok_->PieceToId("</s>"), 3);
  EXPECT_EQ(tok_->PieceToId("no-such-piece-in-vocab"), tok_->unk_id());
  for (int id = 0; id < tok_->vocab_size(); ++id) {
    EXPECT_EQ(tok_->PieceToId(tok_->IdToPiece(id)), id) << id;
  }
}

TEST_F(TokenizerTest, IdToPieceOutOfRangeIsEmpty) {
  EXPECT_EQ(tok_->IdToPiece(-1), "");
  EXPECT_EQ(tok_->IdToPiece(100), "");
  EXPECT_EQ(tok_->IdToPiece(INT_MAX), "");
  EXPECT_EQ(tok_->IdToPiece(INT_MIN), "");
}

TEST_F(TokenizerTest, RoundTrip) {
  for (const std::string text : {"der Hund läuft über die Straße.", "the quick dog greets a baker!",
                                 "Müller grüßt am Fluss, schön?",
                                 "a man plays ball in the park with two children", "Bäcker", "a"}) {
    const std::vector<int> ids = EncodeOk(text);
    EXPECT_FALSE(ids.empty()) << text;
    for (int id : ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, tok_->vocab_size());
      EXPECT_NE(id, tok_->unk_id()) << text;
    }
    EXPECT_EQ(tok_->Decode(ids), text);
  }
}

TEST_F(TokenizerTest, PiecesMatchIds) {
  std::vector<std::string> pieces;
  std::string error;
  ASSERT_TRUE(tok_->EncodeAsPieces("der Hund läuft.", &pieces, &error)) << error;
  const std::vector<int> ids = EncodeOk("der Hund läuft.");
  ASSERT_EQ(pieces.size(), ids.size());
  for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(tok_->PieceToId(pieces[i]), ids[i]);
  EXPECT_EQ(pieces[0].rfind("\xE2\x96\x81", 0), 0u) << "first piece starts with ▁";
}

TEST_F(TokenizerTest, EmptyText) {
  EXPECT_TRUE(EncodeOk("").empty());
  EXPECT_EQ(tok_->Decode({}), "");
}

TEST_F(TokenizerTest, UnknownCharactersMapToUnk) {
  const std::vector<int> ids = EncodeOk("dog 🐕 猫");
  int unks = 0;
  for (int id : ids) unks += id == tok_->unk_id();
  EXPECT_GE(unks, 1);
  EXPECT_NE(tok_->Decode(ids).find("\xE2\x81\x87"), std::string::npos) << "⁇ for unk";
}

TEST_F(TokenizerTest, RejectsInvalidUtf8WithOffset) {
  struct Case {
    std::string text;
    size_t offset;
  };
  const std::vector<Case> cases = {
      {"abc\xC3", 3},              // truncated 2-byte sequence at the end
      {"ab\xE2\x82x", 2},          // truncated 3-byte sequence
      {"\x80", 0},                 // stray continuation byte
      {"ok \xC0\xAF", 3},          // overlong '/'
      {"\xE0\x80\xAF", 0},         // overlong 3-byte
      {"Straße \xED\xA0\x80", 8},  // UTF-16 surrogate U+D800 ("ß" is 2 bytes)
      {"\xF4\x90\x80\x80", 0},     // U+110000, above the Unicode range
      {"\xF5\x80\x80\x80", 0},     // F5 never starts a sequence
      {"good\xFF", 4},             // FF never appears in UTF-8
      {std::string("nul\0ok\xC3", 7), 6},
  };
  for (const Case& c : cases) {
    std::vector<int> ids = {5, 6};
    std::string error;
    EXPECT_FALSE(tok_->Encode(c.text, &ids, &error));
    EXPECT_TRUE(ids.empty());
    EXPECT_NE(error.find("UTF-8"), std::string::npos) << error;
    EXPECT_NE(error.find("byte offset " + std::to_string(c.offset)), std::string::npos)
        << "got: " << error;
    std::vector<std::string> pieces = {"x"};
    EXPECT_FALSE(tok_->EncodeAsPieces(c.text, &pieces, &error));
    EXPECT_TRUE(pieces.empty());
  }
}

TEST_F(TokenizerTest, ErrorPointerMayBeNull) {
  std::vector<int> ids;
  EXPECT_FALSE(tok_->Encode("\xFF", &ids, nullptr));
  EXPECT_EQ(Tokenizer::Load(dir() + "/missing.model", nullptr), nullptr);
}

TEST_F(TokenizerTest, DecodeDropsOutOfRangeIds) {
  const std::vector<int> ids = EncodeOk("der Hund läuft.");
  std::vector<int> noisy = {-1, INT_MIN};
  noisy.insert(noisy.end(), ids.begin(), ids.end());
  noisy.insert(noisy.end(), {100, 12345, INT_MAX});
  EXPECT_EQ(tok_->Decode(noisy), "der Hund läuft.");
  EXPECT_EQ(tok_->Decode({-7, 100, INT_MAX}), "");
}

TEST_F(TokenizerTest, ControlIdsDecodeToNothing) {
  std::vector<int> ids = EncodeOk("der Hund");
  ids.insert(ids.begin(), {tok_->bos_id(), tok_->pad_id()});
  ids.push_back(tok_->eos_id());
  EXPECT_EQ(tok_->Decode(ids), "der Hund");
}

TEST_F(TokenizerTest, MissingModelIsNotFound) {
  const std::string path = dir() + "/does-not-exist.model";
  std::string error;
  TokenizerErrorCode code = TokenizerErrorCode::kOk;
  EXPECT_EQ(Tokenizer::Load(path, &error, &code), nullptr);
  EXPECT_EQ(code, TokenizerErrorCode::kNotFound);
  EXPECT_NE(error.find(path), std::string::npos) << error;
}

TEST_F(TokenizerTest, DirectoryIsInvalidArgument) {
  std::string error;
  TokenizerErrorCode code = TokenizerErrorCode::kOk;
  EXPECT_EQ(Tokenizer::Load(dir(), &error, &code), nullptr);
  EXPECT_EQ(code, TokenizerErrorCode::kInvalidArgument);
  EXPECT_NE(error.find(dir()), std::string::npos) << error;
}

TEST_F(TokenizerTest, CorruptModelsAreDataLoss) {
  const std::string model = ReadFile(model_path());
  ASSERT_GT(model.size(), 100u);
  std::mt19937 rng(3);
  std::string random_bytes(4096, '\0');
  for (char& c : random_bytes) c = static_cast<char>(rng());
  std::string flipped = model;
  for (size_t i = 0; i < 64; ++i) flipped[i * 7] = static_cast<char>(~flipped[i * 7]);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"empty", ""},
      {"text", "this is not a sentencepiece model\n"},
      {"random", random_bytes},
      {"truncated", model.substr(0, model.size() / 2)},
      {"header_only", model.substr(0, 10)},
      {"flipped", flipped},
  };
  for (const auto& [name, contents] : files) {
    const std::string path = dir() + "/corrupt_" + name + ".model";
    WriteFile(path, contents);
    std::string error;
    TokenizerErrorCode code = TokenizerErrorCode::kOk;
    EXPECT_EQ(Tokenizer::Load(path, &error, &code), nullptr) << name;
    EXPECT_EQ(code, TokenizerErrorCode::kDataLoss) << name << ": " << error;
    EXPECT_NE(error.find(path), std::string::npos) << error;
  }
}

// Arbitrary bytes never crash Encode, and whatever it accepts decodes.
TEST_F(TokenizerTest, RandomInputNeverCrashes) {
  std::mt19937 rng(11);
  for (int iter = 0; iter < 2000; ++iter) {
    std::string text(rng() % 40, '\0');
    for (char& c : text) c = static_cast<char>(iter % 2 ? rng() % 128 : rng());
    std::vector<int> ids;
    std::string error;
    if (tok_->Encode(text, &ids, &error)) {
      tok_->Decode(ids);
    } else {
      EXPECT_FALSE(error.empty());
    }
    std::vector<int> random_ids(rng() % 20);
    for (int& id : random_ids) id = static_cast<int>(rng() % 300) - 100;
    tok_->Decode(random_ids);
  }
}

TEST_F(TokenizerTest, ConcurrentEncodeMatchesSerial) {
  const std::vector<std::string> texts = {"der Hund läuft über die Straße.",
                                          "the quick dog greets a baker!", "schön am Fluss"};
  std::vector<std::vector<int>> expected;
  for (const auto& t : texts) expected.push_back(EncodeOk(t));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(4, 0);
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int iter = 0; iter < 500; ++iter) {
        const size_t k = (iter + t) % texts.size();
        std::vector<int> ids;
        if (!tok_->Encode(texts[k], &ids, nullptr) || ids != expected[k] ||
            tok_->Decode(ids) != texts[k]) {
          ++mismatches[t];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int m : mismatches) EXPECT_EQ(m, 0);
}

// Real text: train on captions/train.en, round-trip captions/dev.en.
// QUANTMT_DATA_DIR is the data root (holding de-en/) or de-en/ itself.
TEST(TokenizerDataTest, RoundTripsCaptionsDev) {
  const char* root = std::getenv("QUANTMT_DATA_DIR");
  if (root == nullptr || *root == '\0') GTEST_SKIP() << "QUANTMT_DATA_DIR not set";
  fs::path captions = fs::path(root) / "de-en" / "captions";
  if (!fs::exists(captions)) captions = fs::path(root) / "captions";
  if (!fs::exists(captions / "train.en") || !fs::exists(captions / "dev.en")) {
    GTEST_SKIP() << "no captions/{train,dev}.en under " << root;
  }
  const std::string dir =
      ::testing::TempDir() + "quantmt_tokenizer_data_test_" + std::to_string(::getpid());
  fs::create_directories(dir);
  std::string error;
  ASSERT_TRUE(testing::TrainSpmModel((captions / "train.en").string(), dir + "/en", 1000, &error))
      << error;
  auto tok = Tokenizer::Load(dir + "/en.model", &error);
  ASSERT_NE(tok, nullptr) << error;
  std::ifstream dev(captions / "dev.en");
  std::string line;
  int lines = 0, exact = 0;
  while (std::getline(dev, line)) {
    std::vector<int> ids;
    ASSERT_TRUE(tok->Encode(line, &ids, &error)) << error;
    ++lines;
    exact += tok->Decode(ids) == line;
  }
  fs::remove_all(dir);
  EXPECT_GT(lines, 1000);
  // SentencePiece normalizes (NFKC, runs of spaces), so a rare line may differ.
  EXPECT_GE(exact, lines * 99 / 100) << exact << " of " << lines << " round-trip exactly";
}

}  // namespace
}  // namespace quantmt
