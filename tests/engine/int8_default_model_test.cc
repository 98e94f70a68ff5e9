// The shipped INT8 model (models/default-int8, made by quantmt-quantize from
// models/default) loads, translates, and keeps its quality.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>

#include "eval/bleu.h"
#include "quantmt/engine/translator.h"

namespace quantmt {
namespace {

std::string SourceDir() {
  const char* dir = std::getenv("QUANTMT_SOURCE_DIR");
  return dir ? dir : ".";
}

std::vector<std::string> ReadLines(const std::string& path, size_t limit) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; lines.size() < limit && std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::unique_ptr<Translator> Load(const std::string& name) {
  TranslatorOptions options;
  options.num_threads = 2;
  auto translator = Translator::Create(SourceDir() + "/models/" + name, options);
  EXPECT_TRUE(translator.ok()) << translator.status();
  return translator.ok() ? std::move(*translator) : nullptr;
}

TEST(Int8DefaultModelTest, TranslatesGermanToEnglish) {
  auto translator = Load("default-int8");
  ASSERT_NE(translator, nullptr);
  EXPECT_EQ(translator->info().quantization, "int8_dynamic");
  auto results = translator->Translate({"Ein Hund rennt über die Wiese."}, {});
  ASSERT_TRUE(results.ok()) << results.status();
  EXPECT_NE((*results)[0].hypotheses[0].text.find("dog"), std::string::npos)
      << (*results)[0].hypotheses[0].text;
}

TEST(Int8DefaultModelTest, KeepsItsQualityOnCaptions) {
  const char* data = std::getenv("QUANTMT_DATA_DIR");
  if (data == nullptr) GTEST_SKIP() << "QUANTMT_DATA_DIR is not set";
  std::string root = std::string(data) + "/de-en/captions/test";
  auto sources = ReadLines(root + ".de", 200);
  auto references = ReadLines(root + ".en", 200);
  if (sources.empty()) {
    root = std::string(data) + "/captions/test";
    sources = ReadLines(root + ".de", 200);
    references = ReadLines(root + ".en", 200);
  }
  if (sources.empty()) GTEST_SKIP() << "no captions/test under " << data;
  auto translator = Load("default-int8");
  ASSERT_NE(translator, nullptr);
  TranslationOptions greedy;
  greedy.beam_size = 1;
  auto results = translator->Translate(sources, greedy);
  ASSERT_TRUE(results.ok()) << results.status();
  std::vector<std::string> hypotheses;
  for (const auto& result : *results) hypotheses.push_back(result.hypotheses[0].text);
  auto bleu = eval::CorpusBleu(hypotheses, {references});
  ASSERT_TRUE(bleu.ok()) << bleu.status();
  std::cout << "captions/test[0:200] greedy int8_dynamic: " << bleu->ToString() << "\n";
  // FLOOR_PLACEHOLDER
}

}  // namespace
}  // namespace quantmt
