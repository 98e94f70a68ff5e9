// quantmt-translate: translates a file or stdin, one sentence per line, with
// a model directory. The engine alone, no server: training and evaluation
// tools call the same Translator.
#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iomanip>
#include <iostream>

#include "quantmt/engine/translator.h"
#include "quantmt/engine/utf8.h"
#include "train/cli/cli_common.h"

namespace {

struct Flags {
  std::string model_dir = "models/default";
  std::string input, output, device = "cpu", compute_type = "auto";
  int threads = 0, chunk_lines = 256, batch_size = 64;
  bool with_scores = false, quiet = false;
  quantmt::TranslationOptions translation;
};

using quantmt::cli::Fail;
constexpr char kError[] = "quantmt-translate: ";

}  // namespace

int main(int argc, char** argv) {
  Flags flags;
  CLI::App app{"Translate text, one sentence per line, with a quantmt model directory"};
  app.add_option("-m,--model_dir", flags.model_dir, "Model directory")->capture_default_str();
  app.add_option("-i,--input", flags.input, "Input file (default: stdin)");
  app.add_option("-o,--output", flags.output, "Output file (default: stdout)");
  app.add_option("--device", flags.device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--compute_type", flags.compute_type, "auto, float32, float16, bfloat16")
      ->capture_default_str();
  app.add_option("--threads", flags.threads,
                 "CPU cores to use, one single-thread replica each as in the server (0: all)")
      ->capture_default_str();
  app.add_option("--beam_size", flags.translation.beam_size)->capture_default_str();
  app.add_option("--num_hypotheses,--nbest", flags.translation.num_hypotheses,
                 "Hypotheses per sentence (--nbest: the same, its former name)")
      ->capture_default_str();
  app.add_option("--length_penalty", flags.translation.length_penalty)->capture_default_str();
  app.add_option("--max_length", flags.translation.max_length, "Max generated tokens")
      ->capture_default_str();
  app.add_option("--min_length", flags.translation.min_length)->capture_default_str();
  app.add_option("--max_input_length", flags.translation.max_input_length,
                 "Max source tokens (0: the model's limit)")
      ->capture_default_str();
  app.add_option("--batch_size", flags.batch_size, "Sentences decoded together per replica")
      ->capture_default_str();
  app.add_flag("--scores", flags.with_scores, "Print 'score<TAB>translation'");
  app.add_flag("-q,--quiet", flags.quiet, "No progress on stderr");
  CLI11_PARSE(app, argc, argv);

  quantmt::ModelSpec spec;
  spec.model_dir = flags.model_dir;
  spec.runtime.device =
      flags.device == "cuda" ? quantmt::DeviceKind::kCuda : quantmt::DeviceKind::kCpu;
  spec.runtime.compute_type = flags.compute_type;
  if (flags.threads > 0 && flags.device == "cpu") spec.replicas = flags.threads;
  spec.scheduler.max_batch_sentences = flags.batch_size;
  auto translator = quantmt::Translator::Create(spec);
  if (!translator.ok()) return Fail(kError, std::string(translator.status().message()));

  std::ifstream input_file;
  if (!flags.input.empty()) {
    input_file.open(flags.input);
    if (!input_file) return Fail(kError, "cannot open " + flags.input);
  }
  std::istream& in = flags.input.empty() ? std::cin : input_file;
  std::ofstream output_file;
  if (!flags.output.empty()) {
    output_file.open(flags.output, std::ios::trunc);
    if (!output_file) return Fail(kError, "cannot write " + flags.output);
  }
  std::ostream& out = flags.output.empty() ? std::cout : output_file;
  // Progress only when reading a file: on a terminal pipe it would interleave.
  const bool progress = !flags.quiet && !flags.input.empty();

  const auto start = std::chrono::steady_clock::now();
  int64_t lines = 0, source_tokens = 0;
  std::vector<std::string> chunk;
  std::string line;
  auto flush = [&]() -> bool {
    if (chunk.empty()) return true;
    for (size_t i = 0; i < chunk.size(); ++i) {
      size_t bad = 0;
      if (!quantmt::IsValidUtf8(chunk[i], &bad)) {
        Fail(kError, "input line " + std::to_string(lines + i + 1) + ": invalid UTF-8 at byte " +
                         std::to_string(bad));
        return false;
      }
    }
    auto results = (*translator)->Translate(chunk, flags.translation);
    if (!results.ok()) {
      Fail(kError, "input lines " + std::to_string(lines + 1) + "-" +
                       std::to_string(lines + chunk.size()) + ": " +
                       std::string(results.status().message()));
      return false;
    }
    for (const auto& result : *results) {
      source_tokens += result.source_tokens;
      for (const auto& hypothesis : result.hypotheses) {
        if (flags.with_scores)
          out << std::fixed << std::setprecision(4) << hypothesis.score << "\t";
        out << hypothesis.text << "\n";
      }
    }
    out.flush();
    lines += chunk.size();
    chunk.clear();
    if (progress) {
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::cerr << "\rtranslated " << lines << " lines, " << std::fixed << std::setprecision(1)
                << lines / std::max(seconds, 1e-9) << " lines/s, "
                << source_tokens / std::max(seconds, 1e-9) << " source tokens/s" << std::flush;
    }
    return true;
  };
  while (std::getline(in, line)) {
    chunk.push_back(line);
    if (static_cast<int>(chunk.size()) >= flags.chunk_lines && !flush()) return 1;
  }
  if (!flush()) return 1;
  if (progress) std::cerr << "\n";
  return out ? 0 : Fail(kError, "write error");
}
