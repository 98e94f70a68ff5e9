// Text helpers shared by BLEU and chrF.
//
// sacreBLEU works on Python str, i.e. on code points, and its whitespace is
// Python's str.isspace(). To match it, the metrics decode each segment to
// UTF-32 first and use the helpers here; nothing ever splits a multi-byte
// UTF-8 sequence.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "quantmt/engine/status.h"

namespace quantmt::eval {

// Python's str.isspace() for one code point (Unicode 14, as in Python 3.11+).
// Note U+200B ZERO WIDTH SPACE is not whitespace, U+00A0 NO-BREAK SPACE is.
bool IsPythonSpace(char32_t c);

// Python's str.split() with no arguments: split on runs of IsPythonSpace,
// no empty pieces. The views point into `s`.
std::vector<std::u32string_view> SplitWhitespace(std::u32string_view s);

// Python's str.rstrip() with no arguments.
std::u32string_view RStripWhitespace(std::u32string_view s);

// Python's "".join(s.split()): `s` with every whitespace code point removed.
std::u32string RemoveWhitespace(std::u32string_view s);

// Decodes one segment, or InvalidArgument naming `what` (e.g. "hypothesis"),
// its 1-based line number and the byte offset of the first bad byte.
absl::Status DecodeSegment(const std::string& text, const char* what, size_t index,
                           std::u32string* out);

// Checks that every reference stream has as many segments as the
// hypotheses and that there is at least one segment and one stream.
absl::Status CheckCorpusShape(const std::vector<std::string>& hyps,
                              const std::vector<std::vector<std::string>>& refs);

// The non-empty references of segment `index`. sacreBLEU drops "" so that
// segments may have fewer references than there are streams, and fails when
// none is left; so do we (InvalidArgument).
absl::Status NonEmptyReferences(const std::vector<std::vector<std::string>>& refs, size_t index,
                                std::vector<const std::string*>* out);

// The signature's nrefs value: the number of reference streams, also when
// some segments have empty references (sacreBLEU 2.6.0 prints it so, checked
// against the real package in tests/fixtures/eval/golden.json).
std::string NumRefsField(size_t num_streams);

// Python-style "%.{decimals}f" formatting.
std::string FormatFixed(double value, int decimals);

}  // namespace quantmt::eval
