#include "eval/text_utils.h"

#include <cstdio>

#include "absl/strings/str_cat.h"
#include "quantmt/engine/utf8.h"

namespace quantmt::eval {

bool IsPythonSpace(char32_t c) {
  if (c <= 0x20) return c == 0x20 || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F);
  if (c < 0x85) return false;
  switch (c) {
    case 0x85:
    case 0xA0:
    case 0x1680:
    case 0x2028:
    case 0x2029:
    case 0x202F:
    case 0x205F:
    case 0x3000:
      return true;
    default:
      return c >= 0x2000 && c <= 0x200A;
  }
}

std::vector<std::u32string_view> SplitWhitespace(std::u32string_view s) {
  std::vector<std::u32string_view> pieces;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && IsPythonSpace(s[i])) ++i;
    const size_t start = i;
    while (i < s.size() && !IsPythonSpace(s[i])) ++i;
    if (i > start) pieces.push_back(s.substr(start, i - start));
  }
  return pieces;
}

std::u32string_view RStripWhitespace(std::u32string_view s) {
  size_t end = s.size();
  while (end > 0 && IsPythonSpace(s[end - 1])) --end;
  return s.substr(0, end);
}

std::u32string RemoveWhitespace(std::u32string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (!IsPythonSpace(c)) out.push_back(c);
  }
  return out;
}

absl::Status DecodeSegment(const std::string& text, const char* what, size_t index,
                           std::u32string* out) {
  size_t bad = 0;
  if (DecodeUtf8(text, out, &bad)) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat(what, " line ", index + 1, ": invalid UTF-8 at byte offset ", bad));
}

absl::Status CheckCorpusShape(const std::vector<std::string>& hyps,
                              const std::vector<std::vector<std::string>>& refs) {
  if (hyps.empty()) return absl::InvalidArgumentError("no hypotheses to score");
  if (refs.empty()) return absl::InvalidArgumentError("no reference streams");
  for (size_t k = 0; k < refs.size(); ++k) {
    if (refs[k].size() != hyps.size()) {
      return absl::InvalidArgumentError(absl::StrCat("reference stream ", k + 1, " has ",
                                                     refs[k].size(), " lines but there are ",
                                                     hyps.size(), " hypotheses"));
    }
  }
  return absl::OkStatus();
}

absl::Status NonEmptyReferences(const std::vector<std::vector<std::string>>& refs, size_t index,
                                std::vector<const std::string*>* out) {
  out->clear();
  for (const auto& stream : refs) {
    if (!stream[index].empty()) out->push_back(&stream[index]);
  }
  if (out->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("reference line ", index + 1, ": every reference is empty"));
  }
  return absl::OkStatus();
}

std::string NumRefsField(size_t num_streams) { return std::to_string(num_streams); }

std::string FormatFixed(double value, int decimals) {
  // glibc rounds the exact binary value half-to-even, as Python's format does.
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, value);
  return buf;
}

}  // namespace quantmt::eval
