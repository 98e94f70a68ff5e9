// quantmt translate: lines from stdin or a file to stdout or a file, in
// requests of --batch sentences; a progress bar on stderr for files.
#include <fstream>
#include <iostream>

#include "absl/strings/str_format.h"
#include "client/cli/commands.h"
#include "client/lib/progress.h"
#include "quantmt/v1/translation.grpc.pb.h"

namespace quantmt::client {

bool ReadLinesFrom(const std::string& path, std::vector<std::string>* lines) {
  std::ifstream file;
  if (path != "-") {
    file.open(path);
    if (!file) return false;
  }
  std::istream& in = path == "-" ? std::cin : file;
  for (std::string line; std::getline(in, line);) lines->push_back(line);
  return true;
}

namespace {

struct TranslateFlags {
  std::string input = "-", output = "-", model;
  int batch = 32, beam_size = 0, num_hypotheses = 1, max_length = 0;
  bool scores = false;
};

int RunTranslate(const ConnectionOptions& connection, const TranslateFlags& flags) {
  std::vector<std::string> lines;
  if (!ReadLinesFrom(flags.input, &lines)) {
    std::cerr << "quantmt translate: cannot read " << flags.input << "\n";
    return 1;
  }
  std::ofstream file;
  if (flags.output != "-") {
    file.open(flags.output);
    if (!file) {
      std::cerr << "quantmt translate: cannot write " << flags.output << "\n";
      return 1;
    }
  }
  std::ostream& out = flags.output == "-" ? std::cout : file;
  auto stub = Connect<v1::TranslationService>(connection, "translate");
  if (!stub) return 1;
  ProgressDisplay progress(flags.input != "-" ? ProgressDisplay::Style::kRedraw
                                              : ProgressDisplay::Style::kOff);
  for (size_t begin = 0; begin < lines.size(); begin += flags.batch) {
    v1::TranslateRequest request;
    request.set_model(flags.model);
    const size_t end = std::min(lines.size(), begin + flags.batch);
    for (size_t i = begin; i < end; ++i) request.add_sentences(lines[i]);
    request.mutable_options()->set_beam_size(flags.beam_size);
    request.mutable_options()->set_num_hypotheses(flags.num_hypotheses);
    request.mutable_options()->set_max_length(flags.max_length);
    request.mutable_options()->set_return_scores(flags.scores);
    grpc::ClientContext context;
    PrepareContext(connection, false, &context);
    v1::TranslateResponse response;
    grpc::Status status = stub->Translate(&context, request, &response);
    if (!status.ok()) {
      progress.Finish();
      std::cerr << "quantmt translate: lines " << begin + 1 << "-" << end << ": "
                << Describe(status) << "\n";
      return 1;
    }
    for (const v1::Translation& translation : response.translations()) {
      for (const v1::Hypothesis& hypothesis : translation.hypotheses()) {
        if (flags.scores) out << absl::StrFormat("%.4f\t", hypothesis.score());
        out << hypothesis.text() << "\n";
      }
    }
    out.flush();
    progress.Show(ProgressBar(end, lines.size()));
  }
  progress.Finish();
  return 0;
}

}  // namespace

void AddTranslateCommand(CLI::App& app, const ConnectionOptions& connection, int* exit_code) {
  auto flags = std::make_shared<TranslateFlags>();
  CLI::App* command = app.add_subcommand("translate", "Translate lines (stdin or a file)");
  command->add_option("-i,--input", flags->input, "File to translate (-: stdin)")
      ->capture_default_str();
  command->add_option("-o,--output", flags->output, "Where translations go (-: stdout)")
      ->capture_default_str();
  command->add_option("-m,--model", flags->model, "Model name (default: the server's)");
  command->add_option("--batch", flags->batch, "Sentences per request")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  command->add_option("--beam_size", flags->beam_size, "1: greedy; 0: the server default");
  command
      ->add_option("--num_hypotheses,--nbest", flags->num_hypotheses,
                   "Hypotheses per sentence, one line each (--nbest: its former name)")
      ->check(CLI::Range(1, 64));
  command->add_option("--max_length", flags->max_length, "Tokens per translation (0: default)");
  command->add_flag("--scores", flags->scores, "Prefix each line with its score and a tab");
  command->callback(
      [&connection, flags, exit_code] { *exit_code = RunTranslate(connection, *flags); });
}

}  // namespace quantmt::client
