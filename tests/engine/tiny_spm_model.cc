#include "tiny_spm_model.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdint>
#include <fstream>
#include <unordered_map>
#include <vector>

namespace quantmt::testing {

bool WriteTinyCorpus(const std::string& path) {
  const std::vector<std::string> words = {
      "der",      "die",     "das",    "Hund",   "Katze",   "läuft",  "über",  "die",    "Straße",
      "schnell",  "Müller",  "grüßt",  "Bäcker", "schön",   "Café",   "am",    "Fluss",  "und",
      "the",      "dog",     "cat",    "runs",   "across",  "street", "quick", "greets", "baker",
      "nice",     "by",      "river",  "a",      "man",     "woman",  "child", "plays",  "ball",
      "red",      "blue",    "green",  "in",     "park",    "with",   "two",   "three",  "Kinder",
      "spielen",  "Garten",  "Wasser", "trinkt", "Fenster", "Sonne",  "warm",  "kalt",   "Winter",
      "children", "garden",  "water",  "drinks", "window",  "sun",    "cold",  "winter", "jumps",
      "springt",  "Mädchen", "girl",   "Junge",  "boy",     "Zug",    "train", "fährt",  "drives"};
  const std::vector<std::string> ends = {".", "!", "?", ",", ""};
  std::ofstream out(path, std::ios::binary);
  uint32_t state = 12345;  // fixed LCG: the corpus, and so the model, never changes
  const auto next = [&state]() {
    state = state * 1103515245u + 12345u;
    return (state >> 16) & 0x7FFF;
  };
  for (int line = 0; line < 400; ++line) {
    const int len = 4 + static_cast<int>(next() % 9);
    for (int i = 0; i < len; ++i) {
      if (i > 0) out << ' ';
      out << words[next() % words.size()];
    }
    out << ends[next() % ends.size()] << '\n';
  }
  return out.good();
}

bool TrainSpmModel(const std::string& inputs, const std::string& model_prefix, int vocab_size,
                   std::string* error) {
  const std::unordered_map<std::string, std::string> args = {
      {"input", inputs},
      {"model_prefix", model_prefix},
      {"vocab_size", std::to_string(vocab_size)},
      {"model_type", "unigram"},
      {"character_coverage", "1.0"},
      {"num_threads", "1"},
      {"pad_id", "0"},
      {"unk_id", "1"},
      {"bos_id", "2"},
      {"eos_id", "3"},
      {"pad_piece", "<pad>"},
      {"minloglevel", "2"},
  };
  sentencepiece::SetRandomGeneratorSeed(7);
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) {
    *error = status.message();
    return false;
  }
  return true;
}

}  // namespace quantmt::testing
