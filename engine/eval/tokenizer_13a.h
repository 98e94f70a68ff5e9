// sacreBLEU's default BLEU tokenizer "13a" (mteval-v13a.pl's normalization).
#pragma once

#include <string>
#include <string_view>

#include "quantmt/engine/status.h"

namespace quantmt::eval {

// Tokenizes one segment as sacreBLEU's Tokenizer13a does: drops "<skipped>",
// joins "-\n", turns "\n" into a space, unescapes &quot; &amp; &lt; &gt;
// (once each, in that order), splits off ASCII punctuation and symbols,
// splits "." and "," unless between digits, splits "-" after a digit, and
// joins the tokens with single spaces. Works on code points, so a non-ASCII
// letter counts as one "[^0-9]" character.
std::u32string Tokenize13a(std::u32string_view line);

// The same on UTF-8; InvalidArgument for invalid UTF-8.
absl::StatusOr<std::string> Tokenize13a(const std::string& line);

}  // namespace quantmt::eval
