// quantmt benchmark: the server measures a loaded model's speed.
#include <iostream>

#include "absl/strings/str_format.h"
#include "client/cli/commands.h"
#include "client/lib/progress.h"
#include "quantmt/v1/translation.grpc.pb.h"

namespace quantmt::client {
namespace {

struct BenchmarkFlags {
  std::string model, input;
  std::vector<int> batch_sizes;
  int iterations = 0, beam_size = 1, max_length = 0;
};

int RunBenchmark(const ConnectionOptions& connection, const BenchmarkFlags& flags) {
  v1::BenchmarkRequest request;
  request.set_model(flags.model);
  request.set_iterations(flags.iterations);
  for (int size : flags.batch_sizes) request.add_batch_sizes(size);
  request.mutable_options()->set_beam_size(flags.beam_size);
  request.mutable_options()->set_max_length(flags.max_length);
  if (!flags.input.empty()) {
    std::vector<std::string> lines;
    if (!ReadLinesFrom(flags.input, &lines)) {
      std::cerr << "quantmt benchmark: cannot read " << flags.input << "\n";
      return 1;
    }
    *request.mutable_sentences() = {lines.begin(), lines.end()};
  }
  auto stub = Connect<v1::TranslationService>(connection, "benchmark");
  if (!stub) return 1;
  grpc::ClientContext context;
  PrepareContext(connection, false, &context);
  auto reader = stub->Benchmark(&context, request);
  v1::BenchmarkResponse response;
  v1::BenchmarkResult result;
  ProgressDisplay progress(ProgressDisplay::Style::kRedraw);
  while (reader->Read(&response)) {
    if (response.has_progress()) {
      const auto& p = response.progress();
      progress.Show(
          absl::StrFormat("batch %d: %d/%d   ", p.batch_size(), p.iteration(), p.iterations()));
    } else if (response.has_result()) {
      result = response.result();
    }
  }
  progress.Finish();
  grpc::Status status = reader->Finish();
  if (!status.ok()) {
    std::cerr << "quantmt benchmark: " << Describe(status) << "\n";
    return 1;
  }
  std::printf("model %s  precision %s  device %s  weights %.1f MB  resident %.1f MB\n",
              result.model().c_str(), result.precision().c_str(), result.device().c_str(),
              result.weights_bytes() / 1e6, result.process_resident_memory_bytes() / 1e6);
  std::printf("%6s %9s %12s %10s %10s %10s %10s\n", "batch", "requests", "gen tok/s", "sent/s",
              "p50 ms", "p90 ms", "p99 ms");
  for (const v1::BatchSizeResult& batch : result.batches()) {
    std::printf("%6d %9d %12.1f %10.1f %10.1f %10.1f %10.1f\n", batch.batch_size(),
                batch.requests(), batch.generated_tokens_per_second(), batch.sentences_per_second(),
                batch.latency().p50_seconds() * 1e3, batch.latency().p90_seconds() * 1e3,
                batch.latency().p99_seconds() * 1e3);
  }
  return 0;
}

}  // namespace

void AddBenchmarkCommand(CLI::App& app, const ConnectionOptions& connection, int* exit_code) {
  auto flags = std::make_shared<BenchmarkFlags>();
  CLI::App* command = app.add_subcommand("benchmark", "Measure a model's speed on the server");
  command->add_option("-m,--model", flags->model, "Model name (default: the server's)");
  command->add_option("-i,--input", flags->input, "Sentences to use (default: built-in)");
  command->add_option("--batch_sizes", flags->batch_sizes, "Default: 1,8,32")->delimiter(',');
  command->add_option("--iterations", flags->iterations, "Timed requests per batch size (0: 5)");
  command->add_option("--beam_size", flags->beam_size, "1: greedy")->capture_default_str();
  command->add_option("--max_length", flags->max_length, "Tokens per translation (0: default)");
  command->callback(
      [&connection, flags, exit_code] { *exit_code = RunBenchmark(connection, *flags); });
}

}  // namespace quantmt::client
