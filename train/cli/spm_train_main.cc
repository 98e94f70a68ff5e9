// quantmt-spm-train: trains the SentencePiece model the engine tokenizes with.
//
//   quantmt-spm-train --input=train.de,train.en --model_dir=models/de-en
//       --vocab_size=8000 --model_type=unigram      (one command line)
//
// writes models/de-en/spm.model and spm.vocab (a joint vocabulary). For one
// vocabulary per language, run twice with --prefix=spm.de / --prefix=spm.en.
// Special ids are fixed so the engine can rely on them: pad=0, unk=1, bos=2,
// eos=3. Errors go to stderr with exit code 1.
//
// Flags are parsed with CLI11, not absl flags: this file includes
// SentencePiece's headers, whose absl::string_view clashes with Abseil's.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <system_error>
#include <thread>
#include <unordered_map>
#include <vector>

#include "quantmt/engine/tokenizer.h"
#include "train/cli/cli_common.h"

namespace {

namespace fs = std::filesystem;

struct Flags {
  std::vector<std::string> inputs;
  std::string model_dir;
  std::string prefix = "spm";
  int vocab_size = 8000;
  std::string model_type = "unigram";
  double character_coverage = 1.0;
  int64_t input_sentence_size = 2000000;
  bool shuffle_input_sentence = true;
  unsigned seed = 42;
  int threads = 0;
  bool quiet = false;
};

using quantmt::cli::Fail;
constexpr char kError[] = "quantmt-spm-train: error: ";

// Checks what SentencePiece would otherwise report late or obscurely.
std::string ValidateFlags(const Flags& f) {
  if (f.inputs.empty()) return "--input needs at least one file";
  for (const auto& path : f.inputs) {
    std::error_code ec;
    if (!fs::is_regular_file(path, ec)) return "input file '" + path + "' does not exist";
    if (fs::file_size(path, ec) == 0) return "input file '" + path + "' is empty";
  }
  if (f.model_dir.empty()) return "--model_dir is required";
  if (f.prefix.empty() || f.prefix.find('/') != std::string::npos) {
    return "--prefix must be a plain file name stem";
  }
  if (f.model_type != "unigram" && f.model_type != "bpe") {
    return "--model_type must be 'unigram' or 'bpe', not '" + f.model_type + "'";
  }
  // 4 special pieces plus room for at least a few real ones.
  if (f.vocab_size < 8) return "--vocab_size must be at least 8";
  if (!(f.character_coverage > 0.0 && f.character_coverage <= 1.0)) {
    return "--character_coverage must be in (0, 1]";
  }
  if (f.input_sentence_size < 0) return "--input_sentence_size must be >= 0 (0: all)";
  if (f.threads < 0) return "--threads must be >= 0 (0: all cores)";
  return "";
}

std::string JoinComma(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Flags f;
  CLI::App app("Trains a SentencePiece model for quantmt (pad=0, unk=1, bos=2, eos=3).",
               "quantmt-spm-train");
  app.add_option("--input", f.inputs, "Comma-separated text files, one sentence per line")
      ->required()
      ->delimiter(',');
  app.add_option("--model_dir", f.model_dir, "Output directory (created if missing)")->required();
  app.add_option("--prefix", f.prefix, "Writes DIR/PREFIX.model and DIR/PREFIX.vocab")
      ->capture_default_str();
  app.add_option("--vocab_size", f.vocab_size, "Vocabulary size, special pieces included")
      ->capture_default_str();
  app.add_option("--model_type", f.model_type, "unigram or bpe")->capture_default_str();
  app.add_option("--character_coverage", f.character_coverage,
                 "Share of characters covered by the vocabulary")
      ->capture_default_str();
  app.add_option("--input_sentence_size", f.input_sentence_size,
                 "Sentences sampled for training (0: all)")
      ->capture_default_str();
  app.add_flag("--shuffle_input_sentence", f.shuffle_input_sentence,
               "Sample input sentences at random (=false: take the first ones)")
      ->capture_default_str();
  app.add_option("--seed", f.seed, "Random seed, for reproducible sampling")->capture_default_str();
  app.add_option("--threads", f.threads, "Training threads (0: all cores)")->capture_default_str();
  app.add_flag("--quiet", f.quiet, "Only warnings and errors from SentencePiece");
  if (int exit_code = 0; !quantmt::cli::ParseFlags(app, argc, argv, &exit_code)) return exit_code;

  if (const std::string problem = ValidateFlags(f); !problem.empty()) return Fail(kError, problem);
  std::error_code ec;
  fs::create_directories(f.model_dir, ec);
  if (ec) return Fail(kError, "cannot create --model_dir '" + f.model_dir + "': " + ec.message());

  int threads = f.threads;
  if (threads == 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const std::string model_prefix = (fs::path(f.model_dir) / f.prefix).string();
  const std::unordered_map<std::string, std::string> args = {
      {"input", JoinComma(f.inputs)},
      {"model_prefix", model_prefix},
      {"vocab_size", std::to_string(f.vocab_size)},
      {"model_type", f.model_type},
      {"character_coverage", std::to_string(f.character_coverage)},
      {"input_sentence_size", std::to_string(f.input_sentence_size)},
      {"shuffle_input_sentence", f.shuffle_input_sentence ? "true" : "false"},
      {"num_threads", std::to_string(threads)},
      // The engine relies on these ids; see tokenizer.h.
      {"pad_id", "0"},
      {"unk_id", "1"},
      {"bos_id", "2"},
      {"eos_id", "3"},
      {"pad_piece", "<pad>"},
      {"unk_piece", "<unk>"},
      {"bos_piece", "<s>"},
      {"eos_piece", "</s>"},
      {"minloglevel", f.quiet ? "1" : "0"},
  };
  sentencepiece::SetRandomGeneratorSeed(f.seed);

  const auto start = std::chrono::steady_clock::now();
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!status.ok()) return Fail(kError, std::string("training failed: ") + status.message());

  // Load what was written, through the engine's own loader, so a model that
  // the engine would refuse is caught here.
  const std::string model_path = model_prefix + ".model";
  std::string error;
  const auto tokenizer = quantmt::Tokenizer::Load(model_path, &error);
  if (tokenizer == nullptr) return Fail(kError, "trained model does not load: " + error);
  if (tokenizer->pad_id() != 0 || tokenizer->unk_id() != 1 || tokenizer->bos_id() != 2 ||
      tokenizer->eos_id() != 3) {
    return Fail(kError, "trained model has unexpected special ids");
  }

  std::printf("quantmt-spm-train: done in %.1f s\n", seconds);
  std::printf("  model:       %s\n", model_path.c_str());
  std::printf("  vocab file:  %s.vocab\n", model_prefix.c_str());
  std::printf("  model type:  %s\n", f.model_type.c_str());
  std::printf("  vocab size:  %d (pad=0 unk=1 bos=2 eos=3)\n", tokenizer->vocab_size());
  std::printf("  inputs:      %s\n", JoinComma(f.inputs).c_str());
  std::printf("  coverage:    %g, threads %d, seed %u\n", f.character_coverage, threads, f.seed);
  return 0;
}
