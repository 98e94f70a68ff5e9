// Shared by the tests of the shipped models and their compressed copies:
// where the tree is, loading a model directory, and greedy BLEU on the first
// 200 lines of captions/test (Multi30k 2016) from QUANTMT_DATA_DIR.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "quantmt/engine/translator.h"
#include "quantmt/eval/bleu.h"

namespace quantmt {

inline std::string SourceDir() {
  const char* dir = std::getenv("QUANTMT_SOURCE_DIR");
  return dir ? dir : ".";
}

inline std::vector<std::string> ReadLines(const std::string& path, size_t limit) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; lines.size() < limit && std::getline(in, line);) lines.push_back(line);
  return lines;
}

// A Translator on 2 threads; null (with a test failure) when it cannot load.
inline std::unique_ptr<Translator> LoadTranslator(const std::string& model_dir) {
  RuntimeOptions options;
  options.num_threads = 2;
  auto translator = Translator::Create(model_dir, options);
  EXPECT_TRUE(translator.ok()) << translator.status();
  return translator.ok() ? std::move(*translator) : nullptr;
}

// Greedy BLEU of `model_dir` on captions/test[0:200]; -1 without the data,
// 0 (with a test failure) when translating fails.
inline double CaptionsGreedyBleu(const std::string& model_dir) {
  const char* data = std::getenv("QUANTMT_DATA_DIR");
  if (data == nullptr) return -1;
  const std::string root = std::string(data) + "/de-en/captions/test";
  auto sources = ReadLines(root + ".de", 200);
  auto references = ReadLines(root + ".en", 200);
  if (sources.empty()) return -1;
  auto translator = LoadTranslator(model_dir);
  if (translator == nullptr) return 0;
  TranslationOptions greedy;
  greedy.beam_size = 1;
  auto results = translator->Translate(sources, greedy);
  EXPECT_TRUE(results.ok()) << results.status();
  if (!results.ok()) return 0;
  std::vector<std::string> hypotheses;
  for (const auto& result : *results) hypotheses.push_back(result.hypotheses[0].text);
  auto bleu = eval::CorpusBleu(hypotheses, {references});
  EXPECT_TRUE(bleu.ok()) << bleu.status();
  if (!bleu.ok()) return 0;
  std::cout << model_dir << ", captions/test[0:200] greedy: " << bleu->ToString() << "\n";
  return bleu->score;
}

}  // namespace quantmt
