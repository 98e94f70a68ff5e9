#include "eval/tokenizer_13a.h"

#include "eval/text_utils.h"
#include "quantmt/engine/utf8.h"

namespace quantmt::eval {
namespace {

bool IsDigit(char32_t c) { return c >= U'0' && c <= U'9'; }
bool IsPeriodOrComma(char32_t c) { return c == U'.' || c == U','; }

// The character class [\{-\~\[-\` -\&\(-\+\:-\@\/] of 13a's first rule: ASCII
// symbols and punctuation except ' , - . (and digits/letters).
bool IsSplitSymbol(char32_t c) {
  return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
         (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == U'/';
}

// Python's str.replace(from, to): non-overlapping, left to right.
std::u32string ReplaceAll(const std::u32string& s, std::u32string_view from,
                          std::u32string_view to) {
  std::u32string out;
  out.reserve(s.size());
  size_t pos = 0;
  while (true) {
    const size_t hit = s.find(from, pos);
    if (hit == std::u32string::npos) break;
    out.append(s, pos, hit - pos);
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s, pos, std::u32string::npos);
  return out;
}

// re.sub(r'([^0-9])([\.,])', r'\1 \2 ', s). Each of the three two-character
// rules below scans left to right and resumes after a match, as re.sub does.
std::u32string SplitPeriodCommaAfterNonDigit(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && !IsDigit(s[i]) && IsPeriodOrComma(s[i + 1])) {
      out += s[i];
      out += U' ';
      out += s[i + 1];
      out += U' ';
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

// re.sub(r'([\.,])([^0-9])', r' \1 \2', s)
std::u32string SplitPeriodCommaBeforeNonDigit(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && IsPeriodOrComma(s[i]) && !IsDigit(s[i + 1])) {
      out += U' ';
      out += s[i];
      out += U' ';
      out += s[i + 1];
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

// re.sub(r'([0-9])(-)', r'\1 \2 ', s)
std::u32string SplitDashAfterDigit(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size() + s.size() / 4);
  size_t i = 0;
  while (i < s.size()) {
    if (i + 1 < s.size() && IsDigit(s[i]) && s[i + 1] == U'-') {
      out += s[i];
      out += U" - ";
      i += 2;
    } else {
      out += s[i++];
    }
  }
  return out;
}

}  // namespace

std::u32string Tokenize13a(std::u32string_view line) {
  std::u32string s(line);
  s = ReplaceAll(s, U"<skipped>", U"");
  s = ReplaceAll(s, U"-\n", U"");
  s = ReplaceAll(s, U"\n", U" ");
  s = ReplaceAll(s, U"&quot;", U"\"");
  s = ReplaceAll(s, U"&amp;", U"&");
  s = ReplaceAll(s, U"&lt;", U"<");
  s = ReplaceAll(s, U"&gt;", U">");

  std::u32string spaced;
  spaced.reserve(s.size() * 2 + 2);
  spaced += U' ';
  for (char32_t c : s) {
    if (IsSplitSymbol(c)) {
      spaced += U' ';
      spaced += c;
      spaced += U' ';
    } else {
      spaced += c;
    }
  }
  spaced += U' ';

  s = SplitPeriodCommaAfterNonDigit(spaced);
  s = SplitPeriodCommaBeforeNonDigit(s);
  s = SplitDashAfterDigit(s);

  std::u32string joined;
  joined.reserve(s.size());
  for (std::u32string_view token : SplitWhitespace(s)) {
    if (!joined.empty()) joined += U' ';
    joined.append(token);
  }
  return joined;
}

absl::StatusOr<std::string> Tokenize13a(const std::string& line) {
  std::u32string decoded;
  RETURN_IF_ERROR(DecodeSegment(line, "input", 0, &decoded));
  return EncodeUtf8(Tokenize13a(decoded));
}

}  // namespace quantmt::eval
