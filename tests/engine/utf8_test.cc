#include "quantmt/engine/utf8.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace quantmt {
namespace {

TEST(Utf8Test, AcceptsWellFormed) {
  for (const std::string s :
       {"", "plain ASCII", "Straße Grüße", "日本語", "emoji 🐕👍", "\xF4\x8F\xBF\xBF" /* U+10FFFF */,
        "\xEE\x80\x80" /* U+E000 */, "\xED\x9F\xBF" /* U+D7FF */, "\xEF\xBF\xBD" /* U+FFFD */}) {
    size_t bad = 99;
    EXPECT_TRUE(IsValidUtf8(s, &bad)) << s;
    EXPECT_EQ(bad, 99u) << "untouched on success";
  }
  EXPECT_TRUE(IsValidUtf8(std::string("a\0b", 3), nullptr));
}

TEST(Utf8Test, RejectsIllFormedWithOffset) {
  const std::vector<std::pair<std::string, size_t>> cases = {
      {"\x80", 0},                // continuation byte alone
      {"abc\xBF", 3},             // continuation byte alone
      {"\xC0\x80", 0},            // overlong NUL
      {"\xC1\xBF", 0},            // overlong
      {"\xE0\x9F\xBF", 0},        // overlong 3-byte
      {"\xF0\x8F\xBF\xBF", 0},    // overlong 4-byte
      {"\xED\xA0\x80", 0},        // surrogate U+D800
      {"x\xED\xBF\xBF", 1},       // surrogate U+DFFF
      {"\xF4\x90\x80\x80", 0},    // U+110000
      {"\xF5\x80\x80\x80", 0},    // lead byte F5
      {"\xFE", 0},                // FE
      {"\xFF", 0},                // FF
      {"ab\xC3", 2},              // truncated at end
      {"\xE6\x97", 0},            // truncated 3-byte
      {"\xF0\x9F\x90", 0},        // truncated 4-byte
      {"\xC3(", 0},               // bad continuation
      {"ok\xE6\x97(", 2},         // bad third byte
      {"üü\xF0\x9F\x90\x28", 4},  // bad fourth byte, after two 2-byte chars
  };
  for (const auto& [s, offset] : cases) {
    size_t bad = 12345;
    EXPECT_FALSE(IsValidUtf8(s, &bad));
    EXPECT_EQ(bad, offset);
    EXPECT_FALSE(IsValidUtf8(s, nullptr));
    std::u32string cps;
    size_t bad2 = 12345;
    EXPECT_FALSE(DecodeUtf8(s, &cps, &bad2));
    EXPECT_EQ(bad2, offset);
  }
}

TEST(Utf8Test, DecodeEncodeRoundTrip) {
  const std::string s = "aß日🐕\xF4\x8F\xBF\xBF";
  std::u32string cps;
  ASSERT_TRUE(DecodeUtf8(s, &cps, nullptr));
  EXPECT_EQ(cps, (std::u32string{U'a', 0xDF, 0x65E5, 0x1F415, 0x10FFFF}));
  EXPECT_EQ(EncodeUtf8(cps), s);
}

TEST(Utf8Test, EncodeReplacesNonScalarValues) {
  EXPECT_EQ(EncodeUtf8(std::u32string{0xD800}), "\xEF\xBF\xBD");
  EXPECT_EQ(EncodeUtf8(std::u32string{0x110000}), "\xEF\xBF\xBD");
}

// Every code point round-trips, and validation agrees with decoding.
TEST(Utf8Test, AllScalarValuesRoundTrip) {
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    std::string s;
    AppendUtf8(cp, &s);
    std::u32string back;
    ASSERT_TRUE(DecodeUtf8(s, &back, nullptr)) << cp;
    ASSERT_EQ(back.size(), 1u);
    ASSERT_EQ(back[0], cp);
  }
}

// Cross-check the validator against a naive reference on random bytes.
bool NaiveValid(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char b = s[i];
    int len = b < 0x80 ? 1 : (b >> 5) == 6 ? 2 : (b >> 4) == 14 ? 3 : (b >> 3) == 30 ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    char32_t cp = len == 1 ? b : b & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
      const unsigned char c = s[i + k];
      if ((c & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (c & 0x3F);
    }
    const char32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

TEST(Utf8Test, AgreesWithNaiveValidator) {
  std::mt19937 rng(5);
  const unsigned char interesting[] = {0x00, 0x41, 0x7F, 0x80, 0xBF, 0xC0, 0xC2, 0xDF, 0xE0, 0xED,
                                       0xEF, 0xF0, 0xF4, 0xF5, 0xFF, 0x9F, 0xA0, 0x8F, 0x90};
  for (int iter = 0; iter < 200000; ++iter) {
    std::string s(rng() % 8, '\0');
    for (char& c : s) c = static_cast<char>(interesting[rng() % sizeof(interesting)]);
    ASSERT_EQ(IsValidUtf8(s, nullptr), NaiveValid(s));
  }
}

}  // namespace
}  // namespace quantmt
