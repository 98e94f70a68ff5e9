// quantmt-evaluate: translates every test set of a corpus directory with a
// model directory and reports BLEU and chrF (computed as sacreBLEU 2.x does)
// per domain and test set, as a table on the terminal and as JSON.
//
// Corpus layout: DATA_DIR/<domain>/test*.<src> with test*.<tgt> beside it.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "eval/bleu.h"
#include "eval/chrf.h"
#include "quantmt/engine/translator.h"

namespace {

namespace fs = std::filesystem;

struct TestSet {
  std::string domain, name, source, reference;
};

std::vector<std::string> ReadLines(const std::string& path, size_t limit) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; (limit == 0 || lines.size() < limit) && std::getline(in, line);) {
    lines.push_back(line);
  }
  return lines;
}

std::vector<TestSet> FindTestSets(const std::string& data_dir, const std::string& src,
                                  const std::string& tgt) {
  std::vector<TestSet> sets;
  std::error_code error;
  for (const auto& domain : fs::directory_iterator(data_dir, error)) {
    if (!domain.is_directory()) continue;
    for (const auto& file : fs::directory_iterator(domain.path(), error)) {
      const std::string name = file.path().filename().string();
      if (name.rfind("test", 0) != 0 || file.path().extension() != "." + src) continue;
      fs::path reference = file.path();
      reference.replace_extension(tgt);
      if (!fs::exists(reference)) continue;
      sets.push_back({domain.path().filename().string(), file.path().stem().string(),
                      file.path().string(), reference.string()});
    }
  }
  std::sort(sets.begin(), sets.end(), [](const TestSet& a, const TestSet& b) {
    return std::tie(a.domain, a.name) < std::tie(b.domain, b.name);
  });
  return sets;
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
  app.add_option("--batch_size", options.max_batch_size)->capture_default_str();
  app.add_option("--max_lines", max_lines, "Lines per test set (0: all)")->capture_default_str();
  app.add_option("--threads", threads, "CPU threads (0: all cores)")->capture_default_str();
  app.add_option("--device", device)->check(CLI::IsMember({"cpu", "cuda"}))->capture_default_str();
  bool cuda_graphs = true;
  app.add_option("--cuda_graphs", cuda_graphs,
                 "With --device cuda, greedy search runs on CUDA graphs (false: op by op, for "
                 "comparison; beam search is op by op either way)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  quantmt::RuntimeOptions translator_options;
  translator_options.num_threads = threads;
  translator_options.device =
      device == "cuda" ? quantmt::DeviceKind::kCuda : quantmt::DeviceKind::kCpu;
  translator_options.cuda_graphs = cuda_graphs;
  auto translator = quantmt::Translator::Create(model_dir, translator_options);
  if (!translator.ok()) {
    std::cerr << "quantmt-evaluate: " << translator.status().message() << "\n";
    return 1;
  }
  if (source_language.empty()) source_language = (*translator)->info().source_language;
  if (target_language.empty()) target_language = (*translator)->info().target_language;
  const auto sets = FindTestSets(data_dir, source_language, target_language);
  if (sets.empty()) {
    std::cerr << "quantmt-evaluate: no test*." << source_language << " / test*." << target_language
              << " pairs under " << data_dir << "\n";
    return 1;
  }

  nlohmann::json report = {{"model_dir", model_dir},
                           {"device", (*translator)->info().device},
                           {"beam_size", options.beam_size},
                           {"sets", nlohmann::json::array()}};
  std::string bleu_signature, chrf_signature;
  std::printf("%-10s %-18s %7s %8s %8s %10s %8s\n", "domain", "test set", "lines", "BLEU", "chrF",
              "tokens/s", "refused");
  for (size_t i = 0; i < sets.size(); ++i) {
    const TestSet& set = sets[i];
    const auto sources = ReadLines(set.source, max_lines);
    const auto references = ReadLines(set.reference, max_lines);
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
    if (!out) {
      std::cerr << "quantmt-evaluate: cannot write " << json_path << "\n";
      return 1;
    }
  }
  return 0;
}
