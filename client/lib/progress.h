// The live progress line of a CLI command on stderr.
#pragma once

#include <cstddef>
#include <iostream>
#include <string>

namespace quantmt::client {

class ProgressDisplay {
 public:
  enum class Style {
    kOff,     // nothing is shown
    kRedraw,  // one line, redrawn in place ("\r"); Finish ends it
    kAppend,  // a line per Show, as a log wants it
  };
  // kRedraw when stderr is a terminal, else kAppend.
  static Style ForStderr();

  explicit ProgressDisplay(Style style, std::ostream& out = std::cerr) : style_(style), out_(out) {}

  // Replaces (kRedraw) or follows (kAppend) what was shown before.
  void Show(const std::string& text);
  // Ends a redrawn line, so that what follows starts on a line of its own.
  void Finish();

 private:
  const Style style_;
  std::ostream& out_;
};

// "[####    ] 4/8": `done` of `total` as a bar `width` characters wide.
std::string ProgressBar(size_t done, size_t total, int width = 40);

}  // namespace quantmt::client
