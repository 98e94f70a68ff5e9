// quantmt evaluate: per-domain BLEU/chrF table of test sets from the
// server's data directory (--sets) or local files (--src/--ref).
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_format.h"
#include "client/cli/commands.h"
#include "client/lib/progress.h"
#include "quantmt/v1/translation.grpc.pb.h"

namespace quantmt::client {
namespace {

struct EvaluateFlags {
  std::string model, source, reference, domain = "local", json;
  std::vector<std::string> sets;
  int beam_size = 0, max_lines = 0;
};

int RunEvaluate(const ConnectionOptions& connection, const EvaluateFlags& flags) {
  v1::EvaluateRequest request;
  request.set_model(flags.model);
  request.set_max_lines(flags.max_lines);
  request.mutable_options()->set_beam_size(flags.beam_size);
  for (const std::string& set : flags.sets) request.add_data_sets(set);
  if (!flags.source.empty()) {
    v1::TestSet* set = request.add_test_sets();
    std::vector<std::string> sources, references;
    if (!ReadLinesFrom(flags.source, &sources) || !ReadLinesFrom(flags.reference, &references)) {
      std::cerr << "quantmt evaluate: cannot read " << flags.source << " or " << flags.reference
                << "\n";
      return 1;
    }
    set->set_domain(flags.domain);
    set->set_name(flags.source);
    *set->mutable_sources() = {sources.begin(), sources.end()};
    *set->mutable_references() = {references.begin(), references.end()};
  }
  auto stub = Connect<v1::TranslationService>(connection, "evaluate");
  if (!stub) return 1;
  grpc::ClientContext context;
  PrepareContext(connection, false, &context);
  auto reader = stub->Evaluate(&context, request);
  v1::EvaluateResponse response;
  v1::EvaluateResult result;
  ProgressDisplay progress(ProgressDisplay::Style::kRedraw);
  while (reader->Read(&response)) {
    if (response.has_progress()) {
      const auto& p = response.progress();
      progress.Show(absl::StrFormat("%s/%s: %d/%d lines   ", p.domain(), p.name(), p.lines_done(),
                                    p.lines_total()));
    } else if (response.has_result()) {
      result = response.result();
    }
  }
  progress.Finish();
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    std::cerr << "quantmt evaluate: " << Describe(status) << "\n";
    return 1;
  }
  std::printf("%-10s %-22s %7s %8s %8s %10s %8s\n", "domain", "test set", "lines", "BLEU", "chrF",
              "tok/s", "refused");
  nlohmann::ordered_json json = {{"model", result.model()}, {"sets", nlohmann::json::array()}};
  for (const v1::TestSetScore& score : result.scores()) {
    std::printf("%-10s %-22s %7d %8.2f %8.2f %10.0f %8d\n", score.domain().c_str(),
                score.name().c_str(), score.lines(), score.bleu(), score.chrf(),
                score.source_tokens_per_second(), score.refused_lines());
    json["sets"].push_back({{"domain", score.domain()},
                            {"test_set", score.name()},
                            {"lines", score.lines()},
                            {"bleu", score.bleu()},
                            {"chrf", score.chrf()},
                            {"refused_lines", score.refused_lines()}});
  }
  std::printf("BLEU: %s\nchrF: %s\n", result.bleu_signature().c_str(),
              result.chrf_signature().c_str());
  json["bleu_signature"] = result.bleu_signature();
  json["chrf_signature"] = result.chrf_signature();
  if (!flags.json.empty()) {
    std::ofstream out(flags.json);
    out << json.dump(2) << "\n";
    if (!out) {
      std::cerr << "quantmt evaluate: cannot write " << flags.json << "\n";
      return 1;
    }
  }
  return 0;
}

}  // namespace

void AddEvaluateCommand(CLI::App& app, const ConnectionOptions& connection, int* exit_code) {
  auto flags = std::make_shared<EvaluateFlags>();
  CLI::App* command = app.add_subcommand(
      "evaluate", "BLEU/chrF per test set: the server's data directory or local files");
  command->add_option("-m,--model", flags->model, "Model name (default: the server's)");
  command
      ->add_option("--sets", flags->sets,
                   "Server test sets: DOMAIN or DOMAIN/NAME (default: all, unless --src)")
      ->delimiter(',');
  command->add_option("--src", flags->source, "Local source file (sent inline)");
  auto* reference = command->add_option("--ref", flags->reference, "Local reference file");
  command->get_option("--src")->needs(reference);
  reference->needs(command->get_option("--src"));
  command->add_option("--domain", flags->domain, "Domain label of --src")->capture_default_str();
  command->add_option("--beam_size", flags->beam_size, "0: the server default");
  command->add_option("--max_lines", flags->max_lines, "Lines per test set (0: all)");
  command->add_option("--json", flags->json, "Also write the report as JSON here");
  command->callback(
      [&connection, flags, exit_code] { *exit_code = RunEvaluate(connection, *flags); });
}

}  // namespace quantmt::client
