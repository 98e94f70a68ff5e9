// quantmt load: the load tester (closed or open loop, schedules, warm-up),
// a live progress line on stderr, then a summary (text, --json or --csv).
#include <iostream>
#include <vector>

#include "client/cli/commands.h"
#include "client/lib/progress.h"
#include "client/load/load_report.h"
#include "client/load/load_tester.h"

namespace quantmt::client {
namespace {

struct LoadFlags {
  std::string input, model, arrivals = "constant", schedule = "constant", format = "text";
  int concurrency = 0, sentences = 1, beam_size = 1, max_length = 0, max_inflight = 512;
  double rate = 0, end_level = -1, step = 1, step_seconds = 5;
  double duration_s = 10, warmup_s = 0, timeout_s = 30;
  double cancel_fraction = 0, cancel_within_ms = 500, deadline_fraction = 0;
  std::vector<double> deadline_ms = {50, 500};
  int64_t requests = 0;
};

int RunLoadCommand(const ConnectionOptions& connection, const LoadFlags& flags) {
  LoadOptions options;
  if (flags.rate > 0 && flags.concurrency > 0) {
    std::cerr << "quantmt load: give --concurrency or --rate, not both\n";
    return 2;
  }
  options.mode = flags.rate > 0 ? LoadMode::kRate : LoadMode::kConcurrency;
  options.start_level = flags.rate > 0 ? flags.rate : std::max(flags.concurrency, 1);
  options.end_level = flags.end_level >= 0 ? flags.end_level : options.start_level;
  options.arrivals = flags.arrivals == "poisson" ? Arrivals::kPoisson : Arrivals::kConstant;
  options.schedule = flags.schedule == "step"   ? Schedule::kStep
                     : flags.schedule == "ramp" ? Schedule::kRamp
                                                : Schedule::kConstant;
  options.step = flags.step;
  options.step_duration = absl::Seconds(flags.step_seconds);
  options.duration = absl::Seconds(flags.duration_s);
  options.total_requests = flags.requests;
  options.warmup = absl::Seconds(flags.warmup_s);
  options.max_inflight = flags.max_inflight;
  options.request_timeout = absl::Seconds(flags.timeout_s);
  options.cancel_fraction = flags.cancel_fraction;
  options.cancel_within = absl::Milliseconds(flags.cancel_within_ms);
  options.deadline_fraction = flags.deadline_fraction;
  options.short_deadline_min = absl::Milliseconds(flags.deadline_ms.front());
  options.short_deadline_max = absl::Milliseconds(flags.deadline_ms.back());
  if (options.short_deadline_min > options.short_deadline_max) {
    std::cerr << "quantmt load: --deadline_ms is MIN,MAX with MIN <= MAX\n";
    return 2;
  }
  options.sentences_per_request = flags.sentences;
  options.model = flags.model;
  options.beam_size = flags.beam_size;
  options.max_length = flags.max_length;
  if (flags.input.empty()) {
    options.inputs = {"Ein kleiner Hund rennt über die Wiese.",
                      "Die Regierung hat am Dienstag neue Maßnahmen angekündigt.",
                      "Morgen wird es im Norden regnerisch."};
  } else if (!ReadLinesFrom(flags.input, &options.inputs) || options.inputs.empty()) {
    std::cerr << "quantmt load: no lines in " << flags.input << "\n";
    return 1;
  }
  auto channel = OpenChannel(connection, "load");
  if (!channel) return 1;
  // On a terminal the line redraws itself; in a log, one line per second.
  ProgressDisplay display(ProgressDisplay::ForStderr());
  LoadResult result = RunLoad(channel, options, [&display](const LoadProgress& progress) {
    display.Show(ProgressLine(progress));
  });
  display.Finish();
  if (flags.format == "json") {
    std::cout << SummaryJson(result);
  } else if (flags.format == "csv") {
    std::cout << SummaryCsv(result);
  } else {
    std::cout << SummaryText(result);
  }
  return 0;
}

}  // namespace

void AddLoadCommand(CLI::App& app, const ConnectionOptions& connection, int* exit_code) {
  auto flags = std::make_shared<LoadFlags>();
  CLI::App* command = app.add_subcommand("load", "Load-test Translate (in the spirit of ghz)");
  command->add_option("-i,--input", flags->input, "Sentences, one per line (default: built-in)");
  command->add_option("-m,--model", flags->model, "Model name (default: the server's)");
  command->add_option("-c,--concurrency", flags->concurrency,
                      "Closed loop: requests in flight (default 10 unless --rate)");
  command->add_option("-r,--rate", flags->rate, "Open loop: requests per second");
  command->add_option("--arrivals", flags->arrivals, "Open loop spacing")
      ->check(CLI::IsMember({"constant", "poisson"}))
      ->capture_default_str();
  command->add_option("--schedule", flags->schedule, "Level over time")
      ->check(CLI::IsMember({"constant", "step", "ramp"}))
      ->capture_default_str();
  command->add_option("--end", flags->end_level, "Final level of a step/ramp schedule");
  command->add_option("--step", flags->step, "Level change per step")->capture_default_str();
  command->add_option("--step_duration", flags->step_seconds, "Seconds per step")
      ->capture_default_str();
  command->add_option("-z,--duration", flags->duration_s, "Seconds to run (after warm-up)")
      ->check(CLI::Range(0.1, 86400.0))
      ->capture_default_str();
  command->add_option("-n,--requests", flags->requests, "Stop after this many (not --duration)");
  command->add_option("--warmup", flags->warmup_s, "Seconds of uncounted requests first")
      ->capture_default_str();
  command
      ->add_option("--max_inflight", flags->max_inflight, "Open-loop bound on requests in flight")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  command->add_option("--request_timeout", flags->timeout_s, "Seconds per request")
      ->capture_default_str();
  command
      ->add_option("--cancel_fraction", flags->cancel_fraction,
                   "Share of calls this client cancels, after a random delay")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command
      ->add_option("--cancel_within_ms", flags->cancel_within_ms,
                   "Cancel delays are drawn uniformly from 0 to this, ms")
      ->check(CLI::Range(0.0, 3.6e6))
      ->capture_default_str();
  command
      ->add_option("--deadline_fraction", flags->deadline_fraction,
                   "Share of calls sent with a short deadline (see --deadline_ms)")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  command
      ->add_option("--deadline_ms", flags->deadline_ms,
                   "MIN,MAX: short deadlines are drawn uniformly from this range, ms")
      ->delimiter(',')
      ->expected(2)
      ->check(CLI::Range(1.0, 3.6e6))
      ->capture_default_str();
  command->add_option("--sentences", flags->sentences, "Sentences per request")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  command->add_option("--beam_size", flags->beam_size, "1: greedy")->capture_default_str();
  command->add_option("--max_length", flags->max_length, "0: the server default");
  command->add_flag("--json{json}", flags->format, "Summary as JSON");
  command->add_flag("--csv{csv}", flags->format, "Summary as CSV");
  command->callback([&connection, flags, exit_code] {
    if (flags->concurrency == 0 && flags->rate == 0) flags->concurrency = 10;
    *exit_code = RunLoadCommand(connection, *flags);
  });
}

}  // namespace quantmt::client
