// Formatting of the trainer's progress lines.
#include "train/common/progress_log.h"

#include <algorithm>
#include <cmath>

namespace quantmt::train {

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buffer[32];
  if (s >= 3600) {
    std::snprintf(buffer, sizeof(buffer), "%ldh%02ldm", static_cast<long>(s / 3600),
                  static_cast<long>(s / 60 % 60));
  } else if (s >= 60) {
    std::snprintf(buffer, sizeof(buffer), "%ldm%02lds", static_cast<long>(s / 60),
                  static_cast<long>(s % 60));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%lds", static_cast<long>(s));
  }
  return buffer;
}

void ProgressWindow::Add(const Batch& batch, double loss_sum, double nll_sum,
                         double step_grad_norm) {
  loss += loss_sum;
  nll += nll_sum;
  grad_norm += step_grad_norm;
  target_tokens += batch.target_tokens;
  all_tokens += batch.source_tokens + batch.target_tokens;
  ++steps;
}

std::string ProgressWindow::Line(int64_t step, double epoch, double lr, double window_seconds,
                                 double train_seconds, double eta_seconds) const {
  const double token_nll = nll / std::max<int64_t>(1, target_tokens);
  return Format(
      "step %ld | epoch %.2f | loss %.3f | nll %.3f | ppl %.1f | lr %.3g | gnorm %.2f | "
      "%.2f steps/s | %.0f tok/s | elapsed %s | eta %s",
      static_cast<long>(step), epoch, loss / std::max<int64_t>(1, target_tokens), token_nll,
      std::exp(token_nll), lr, grad_norm / std::max<int64_t>(1, steps), steps / window_seconds,
      all_tokens / window_seconds, FormatDuration(train_seconds).c_str(),
      FormatDuration(eta_seconds).c_str());
}

}  // namespace quantmt::train
