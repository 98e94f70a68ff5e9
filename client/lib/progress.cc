#include "client/lib/progress.h"

#include <unistd.h>

#include "absl/strings/str_format.h"

namespace quantmt::client {

ProgressDisplay::Style ProgressDisplay::ForStderr() {
  return isatty(STDERR_FILENO) ? Style::kRedraw : Style::kAppend;
}

void ProgressDisplay::Show(const std::string& text) {
  if (style_ == Style::kRedraw) {
    out_ << "\r" << text << std::flush;
  } else if (style_ == Style::kAppend) {
    out_ << text << "\n" << std::flush;
  }
}

void ProgressDisplay::Finish() {
  if (style_ == Style::kRedraw) out_ << "\n";
}

std::string ProgressBar(size_t done, size_t total, int width) {
  const int filled = total ? static_cast<int>(width * done / total) : width;
  return absl::StrFormat("[%s%s] %zu/%zu", std::string(filled, '#'),
                         std::string(width - filled, ' '), done, total);
}

}  // namespace quantmt::client
