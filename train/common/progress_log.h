// The trainer's log lines: durations, printf-style formatting, and the
// running sums behind each progress line.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "train/common/data.h"

namespace quantmt::train {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point since);

// "1h02m", "3m05s", "42s"; "?" for a negative or non-finite duration.
std::string FormatDuration(double seconds);

// printf-style formatting for log lines (Debian's Abseil has no StrFormat
// target linked here, and iostream manipulators are verbose).
template <typename... Args>
std::string Format(const char* format, Args... args) {
  char buffer[512];
  std::snprintf(buffer, sizeof(buffer), format, args...);
  return buffer;
}

// Sums over the steps since the last progress line: a line shows the
// averages of its own window, not of the whole run.
struct ProgressWindow {
  double loss = 0, nll = 0, grad_norm = 0;
  int64_t target_tokens = 0, all_tokens = 0, steps = 0;

  void Add(const Batch& batch, double loss_sum, double nll_sum, double step_grad_norm);
  // eta_seconds < 0: unknown (no step or epoch limit).
  std::string Line(int64_t step, double epoch, double lr, double window_seconds,
                   double train_seconds, double eta_seconds) const;
};

}  // namespace quantmt::train
