// What a load run does: closed loop (a fixed number of requests in flight)
// or open loop (requests started at a rate, constant or Poisson), for a
// duration or a request count, at a constant, stepped or ramped level.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/time/time.h"

namespace quantmt::client {

enum class LoadMode { kConcurrency, kRate };
enum class Arrivals { kConstant, kPoisson };
enum class Schedule { kConstant, kStep, kRamp };

struct LoadOptions {
  LoadMode mode = LoadMode::kConcurrency;
  Arrivals arrivals = Arrivals::kConstant;  // rate mode only
  // The level: requests in flight (concurrency mode) or requests per second
  // (rate mode). With a step or ramp schedule it goes from `start_level` to
  // `end_level`: by `step` every `step_duration`, or linearly over the run.
  Schedule schedule = Schedule::kConstant;
  double start_level = 10;
  double end_level = 10;
  double step = 1;
  absl::Duration step_duration = absl::Seconds(5);
  // The run stops after `duration`, or after `total_requests` when > 0.
  absl::Duration duration = absl::Seconds(10);
  int64_t total_requests = 0;
  // Requests started in the first `warmup` are sent but not counted.
  absl::Duration warmup = absl::ZeroDuration();
  // Rate mode never has more than this many requests in flight; arrivals
  // beyond it are counted as `skipped` instead of being sent.
  int max_inflight = 512;
  absl::Duration request_timeout = absl::Seconds(30);
  // Impatient clients, for overload and soak runs. A `cancel_fraction`
  // share of the calls is cancelled by the client after a delay drawn
  // uniformly from [0, cancel_within]; a `deadline_fraction` share gets a
  // deadline drawn uniformly from [short_deadline_min, short_deadline_max]
  // instead of `request_timeout`. Draws are seeded: a run repeats.
  double cancel_fraction = 0;
  absl::Duration cancel_within = absl::Milliseconds(500);
  double deadline_fraction = 0;
  absl::Duration short_deadline_min = absl::Milliseconds(50);
  absl::Duration short_deadline_max = absl::Milliseconds(500);

  // What each request carries: `sentences_per_request` consecutive lines of
  // `inputs`, cycling.
  std::vector<std::string> inputs;
  int sentences_per_request = 1;
  std::string model;
  int beam_size = 0;
  int max_length = 0;
};

// The level at `elapsed` into the run (after warm-up).
double LevelAt(const LoadOptions& options, absl::Duration elapsed);

}  // namespace quantmt::client
