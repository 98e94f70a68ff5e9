// quantmt-evaluate: translates every test set of a corpus directory with a
// model directory and reports BLEU and chrF (computed as sacreBLEU 2.x does)
// per domain and test set, as a table on the terminal and as JSON.
//
// Corpus layout: DATA_DIR/<domain>/test*.<src> with test*.<tgt> beside it.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "quantmt/engine/translator.h"
#include "quantmt/eval/bleu.h"
#include "quantmt/eval/chrf.h"
#include "quantmt/eval/test_sets.h"
#include "train/cli/cli_common.h"

namespace {

using quantmt::cli::Fail;
constexpr char kError[] = "quantmt-evaluate: ";

// A file that cannot be read counts as empty: its set is skipped, not fatal.
std::vector<std::string> ReadLinesOrNone(const std::string& path, size_t limit) {
  return quantmt::eval::ReadLines(path, limit).value_or(std::vector<std::string>());
}

// Translates in chunks. A chunk the engine refuses (a sentence over the
// length limit) is retried sentence by sentence; refused sentences get an
// empty hypothesis and are counted, so every set is still scored.
std::vector<std::string> TranslateAll(quantmt::Translator& translator,
                                      const std::vector<std::string>& sources,
                                      const quantmt::TranslationOptions& options, int* refused,
                                      int64_t* source_tokens) {
  std::vector<std::string> hypotheses;
  const size_t chunk = 256;
  for (size_t begin = 0; begin < sources.size(); begin += chunk) {
    std::vector<std::string> part(sources.begin() + begin,
                                  sources.begin() + std::min(sources.size(), begin + chunk));
    auto results = translator.Translate(part, options);
    if (results.ok()) {
      for (const auto& result : *results) {
        hypotheses.push_back(result.hypotheses[0].text);
        *source_tokens += result.source_tokens;
      }
      continue;
    }
    for (const std::string& sentence : part) {
      auto single = translator.Translate({sentence}, options);
      if (single.ok()) {
        hypotheses.push_back((*single)[0].hypotheses[0].text);
        *source_tokens += (*single)[0].source_tokens;
      } else {
        hypotheses.emplace_back();
        ++*refused;
      }
    }
  }
  return hypotheses;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Evaluate a model on every test set of a corpus directory"};
  std::string model_dir = "models/default", data_dir, json_path, device = "cpu";
  std::string source_language, target_language;
  int threads = 0;
  size_t max_lines = 0;
  quantmt::TranslationOptions options;
  options.beam_size = 5;
  app.add_option("-m,--model_dir", model_dir)->capture_default_str();
  app.add_option("-d,--data_dir", data_dir, "Corpus root: DOMAIN/test*.{src,tgt}")->required();
  app.add_option("--json", json_path, "Also write the report as JSON here");
  app.add_option("--src", source_language, "Source file extension (default: the model's)");
  app.add_option("--tgt", target_language, "Target file extension (default: the model's)");
  app.add_option("--beam_size", options.beam_size)->capture_default_str();
  int batch_size = 64;
  app.add_option("--batch_size", batch_size, "Sentences decoded together per replica")
      ->capture_default_str();
  app.add_option("--max_lines", max_lines, "Lines per test set (0: all)")->capture_default_str();
  app.add_option("--threads", threads,
                 "CPU cores to use, one single-thread replica each as in the server (0: all)")
      ->capture_default_str();
  app.add_option("--device", device)->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  bool cuda_graphs = true;
  app.add_option("--cuda_graphs", cuda_graphs,
                 "With --device cuda, decoding steps run on CUDA graphs (false: op by op, for "
                 "comparison)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  quantmt::ModelSpec spec;
  spec.model_dir = model_dir;
  spec.runtime.device = device == "cuda" ? quantmt::DeviceKind::kCuda : quantmt::DeviceKind::kCpu;
  spec.runtime.cuda_graphs = cuda_graphs;
  if (threads > 0 && device == "cpu") spec.replicas = threads;
  spec.scheduler.max_batch_sentences = batch_size;
  auto translator = quantmt::Translator::Create(spec);
  if (!translator.ok()) return Fail(kError, std::string(translator.status().message()));
  if (source_language.empty()) source_language = (*translator)->info().source_language;
  if (target_language.empty()) target_language = (*translator)->info().target_language;
  const auto sets = quantmt::eval::FindTestSets(data_dir, source_language, target_language);
  if (sets.empty()) {
    return Fail(kError, "no test*." + source_language + " / test*." + target_language +
                            " pairs under " + data_dir);
  }

  nlohmann::json report = {{"model_dir", model_dir},
                           {"device", (*translator)->info().device},
                           {"beam_size", options.beam_size},
                           {"sets", nlohmann::json::array()}};
  std::string bleu_signature, chrf_signature;
  std::printf("%-10s %-18s %7s %8s %8s %10s %8s\n", "domain", "test set", "lines", "BLEU", "chrF",
              "tokens/s", "refused");
  for (size_t i = 0; i < sets.size(); ++i) {
    const quantmt::eval::TestSetFiles& set = sets[i];
    const auto sources = ReadLinesOrNone(set.source_path, max_lines);
    const auto references = ReadLinesOrNone(set.reference_path, max_lines);
    if (sources.size() != references.size() || sources.empty()) {
      std::cerr << "skipping " << set.domain << "/" << set.name << ": line counts differ\n";
      continue;
    }
    std::cerr << "[" << i + 1 << "/" << sets.size() << "] " << set.domain << "/" << set.name << ": "
              << sources.size() << " lines ..." << std::flush;
    const auto start = std::chrono::steady_clock::now();
    int refused = 0;
    int64_t source_tokens = 0;
    const auto hypotheses = TranslateAll(**translator, sources, options, &refused, &source_tokens);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    auto bleu = quantmt::eval::CorpusBleu(hypotheses, {references});
    auto chrf = quantmt::eval::CorpusChrf(hypotheses, {references});
    std::cerr << " " << seconds << " s\n";
    if (!bleu.ok() || !chrf.ok()) {
      std::cerr << "skipping " << set.name << ": "
                << (bleu.ok() ? chrf.status() : bleu.status()).message() << "\n";
      continue;
    }
    bleu_signature = bleu->signature;
    chrf_signature = chrf->signature;
    const double tokens_per_second = source_tokens / std::max(seconds, 1e-9);
    std::printf("%-10s %-18s %7zu %8.2f %8.2f %10.0f %8d\n", set.domain.c_str(), set.name.c_str(),
                sources.size(), bleu->score, chrf->score, tokens_per_second, refused);
    std::fflush(stdout);
    report["sets"].push_back({{"domain", set.domain},
                              {"test_set", set.name},
                              {"lines", sources.size()},
                              {"bleu", bleu->score},
                              {"chrf", chrf->score},
                              {"source_tokens_per_second", tokens_per_second},
                              {"refused_lines", refused}});
  }
  report["bleu_signature"] = bleu_signature;
  report["chrf_signature"] = chrf_signature;
  std::printf("BLEU: %s\nchrF: %s\n", bleu_signature.c_str(), chrf_signature.c_str());
  if (!json_path.empty()) {
    std::ofstream out(json_path);
    out << report.dump(2) << "\n";
    if (!out) return Fail(kError, "cannot write " + json_path);
  }
  return 0;
}
