// BLEU on cases small enough to check by hand; sacreBLEU agreement on larger
// text is eval_golden_test's job.
#include "quantmt/eval/bleu.h"

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "eval/tokenizer_13a.h"

namespace quantmt::eval {
namespace {

using Refs = std::vector<std::vector<std::string>>;

BleuScore Bleu(const std::vector<std::string>& hyps, const Refs& refs) {
  auto score = CorpusBleu(hyps, refs);
  EXPECT_TRUE(score.ok()) << score.status();
  return score.ok() ? *score : BleuScore();
}

std::string Tok(const std::string& s) {
  auto t = Tokenize13a(s);
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *t : "<error>";
}

TEST(Tokenize13aTest, Punctuation) {
  EXPECT_EQ(Tok("Hello, world."), "Hello , world .");
  EXPECT_EQ(Tok("(hi) [x] {y}"), "( hi ) [ x ] { y }");
  EXPECT_EQ(Tok("It's 5."), "It's 5 .");  // the apostrophe is not split
  EXPECT_EQ(Tok("U.S.A."), "U . S . A .");
  EXPECT_EQ(Tok("e.g.,"), "e . g . ,");
  EXPECT_EQ(Tok("  Hello   world  "), "Hello world");
  EXPECT_EQ(Tok(""), "");
}

TEST(Tokenize13aTest, NumbersAndHyphens) {
  EXPECT_EQ(Tok("1,000.5"), "1,000.5");  // "." and "," between digits stay
  EXPECT_EQ(Tok("$5,000,000.00"), "$ 5,000,000.00");
  EXPECT_EQ(Tok("a-b"), "a-b");  // "-" splits only after a digit
  EXPECT_EQ(Tok("3-4 km"), "3 - 4 km");
  EXPECT_EQ(Tok("2019-2020"), "2019 - 2020");
  EXPECT_EQ(Tok("x.y"), "x . y");
}

TEST(Tokenize13aTest, EntitiesAndSkipped) {
  EXPECT_EQ(Tok("&quot;Hi&quot; &amp; &lt;b&gt;"), "\" Hi \" & < b >");
  // Unescaped once, in sacreBLEU's order: &amp;quot; -> &quot;, then split.
  EXPECT_EQ(Tok("&amp;quot;"), "& quot ;");
  EXPECT_EQ(Tok("<skipped>Straße."), "Straße .");
  EXPECT_EQ(Tok("line-\nbreak\nnext"), "linebreak next");
}

TEST(Tokenize13aTest, NonAscii) {
  EXPECT_EQ(Tok("Grüße, Müller."), "Grüße , Müller .");  // ü. is one [^0-9] + "."
  EXPECT_EQ(Tok("日本語。"), "日本語。");                // no ASCII punctuation
  EXPECT_EQ(Tok("Preis: 10-20€"), "Preis : 10 - 20€");
  // Python whitespace: NO-BREAK SPACE splits, ZERO WIDTH SPACE does not.
  EXPECT_EQ(Tok("a\u00A0b\u200Bc"), "a b\u200Bc");
  EXPECT_FALSE(Tokenize13a(std::string("bad \xC3")).ok());
}

TEST(BleuTest, PerfectMatchIs100) {
  const BleuScore s = Bleu({"The cat sat on the mat.", "Ein Hund läuft."},
                           {{"The cat sat on the mat.", "Ein Hund läuft."}});
  EXPECT_DOUBLE_EQ(s.score, 100.0);
  EXPECT_EQ(s.precisions, (std::vector<double>{100, 100, 100, 100}));
  EXPECT_DOUBLE_EQ(s.bp, 1.0);
  EXPECT_EQ(s.sys_len, 11);
  EXPECT_EQ(s.ref_len, 11);
  EXPECT_EQ(s.ToString(),
            "BLEU = 100.00 100.0/100.0/100.0/100.0 (BP = 1.000 ratio = 1.000 hyp_len = 11 "
            "ref_len = 11)");
  EXPECT_EQ(s.signature, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
}

TEST(BleuTest, EmptyHypothesisIsZero) {
  const BleuScore s = Bleu({""}, {{"the cat"}});
  EXPECT_EQ(s.score, 0.0);
  EXPECT_EQ(s.bp, 0.0);
  EXPECT_EQ(s.sys_len, 0);
  EXPECT_EQ(s.ref_len, 2);
  EXPECT_EQ(s.ratio, 0.0);
  EXPECT_EQ(s.totals, (std::vector<int64_t>{0, 0, 0, 0}));
}

TEST(BleuTest, NoOverlapIsZero) {
  const BleuScore s = Bleu({"a b c d"}, {{"w x y z"}});
  EXPECT_EQ(s.score, 0.0);
  EXPECT_EQ(s.counts, (std::vector<int64_t>{0, 0, 0, 0}));
  EXPECT_EQ(s.totals, (std::vector<int64_t>{4, 3, 2, 1}));
  EXPECT_EQ(s.precisions, (std::vector<double>{0, 0, 0, 0}));
}

TEST(BleuTest, BrevityPenalty) {
  // All n-grams match, 4 of 6 tokens: BP = exp(1 - 6/4).
  const BleuScore s = Bleu({"the cat sat on"}, {{"the cat sat on the mat"}});
  EXPECT_DOUBLE_EQ(s.bp, std::exp(-0.5));
  EXPECT_NEAR(s.score, 100 * std::exp(-0.5), 1e-9);
  EXPECT_NEAR(s.ratio, 4.0 / 6.0, 1e-12);
}

TEST(BleuTest, GeometricMeanOfPrecisions) {
  // 5/6, 3/5, 2/4, 1/3 -> (1/12)^(1/4).
  const BleuScore s = Bleu({"the cat sat on a mat"}, {{"the cat sat on the mat"}});
  EXPECT_EQ(s.counts, (std::vector<int64_t>{5, 3, 2, 1}));
  EXPECT_EQ(s.totals, (std::vector<int64_t>{6, 5, 4, 3}));
  EXPECT_NEAR(s.score, 100 * std::pow(1.0 / 12, 0.25), 1e-9);
  EXPECT_EQ(s.ToString(),
            "BLEU = 53.73 83.3/60.0/50.0/33.3 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)");
}

TEST(BleuTest, ExpSmoothingForZeroMatches) {
  // 3/4, 1/3, then 0/2 -> 100/(2*2), 0/1 -> 100/(4*1).
  const BleuScore s = Bleu({"a b c d"}, {{"a b x d"}});
  EXPECT_EQ(s.precisions, (std::vector<double>{75.0, 100.0 / 3, 25.0, 25.0}));
  EXPECT_NEAR(s.score, std::sqrt(1250.0), 1e-9);
}

TEST(BleuTest, TooShortForFourGramsIsZero) {
  // No 3- or 4-grams at all: sacreBLEU (effective order off) scores 0.
  const BleuScore s = Bleu({"a b"}, {{"a b"}});
  EXPECT_EQ(s.score, 0.0);
  EXPECT_EQ(s.precisions, (std::vector<double>{100, 100, 0, 0}));
}

TEST(BleuTest, TokenizationAffectsScore) {
  const BleuScore s = Bleu({"Hello, world.", "1,000.5 a-b"}, {{"Hello world!", "1,000.5 a - b"}});
  EXPECT_EQ(s.sys_len, 6);  // Hello , world . | 1,000.5 a-b
  EXPECT_EQ(s.ref_len, 7);  // Hello world ! | 1,000.5 a - b
  EXPECT_EQ(s.counts, (std::vector<int64_t>{3, 0, 0, 0}));
  EXPECT_NEAR(s.score, 14.963824195515972, 1e-9);
}

TEST(BleuTest, MultipleReferences) {
  // Counts clip to the max over references; ref_len is the closest length.
  const BleuScore s =
      Bleu({"the cat is on the mat"}, {{"the cat sat on the mat"}, {"there is a cat on the mat"}});
  EXPECT_EQ(s.counts, (std::vector<int64_t>{6, 3, 1, 0}));
  EXPECT_EQ(s.ref_len, 6);
  EXPECT_NEAR(s.score, 39.76353643835254, 1e-9);
  EXPECT_EQ(s.signature, "nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
}

TEST(BleuTest, ClosestRefLengthTiesGoToShorter) {
  const BleuScore s = Bleu({"a b c"}, {{"a b"}, {"a b c d"}});
  EXPECT_EQ(s.ref_len, 2);
}

TEST(BleuTest, EmptyReferencesAreSkipped) {
  const BleuScore s = Bleu({"a b c d", "e f g h"}, {{"a b c d", ""}, {"", "e f g h"}});
  EXPECT_DOUBLE_EQ(s.score, 100.0);
  // nrefs counts reference streams, as sacreBLEU 2.6.0 prints it.
  EXPECT_EQ(s.signature.rfind("nrefs:2|", 0), 0u) << s.signature;
}

TEST(BleuTest, NonAsciiText) {
  const BleuScore s =
      Bleu({"Die Straße ist schön, 🐕 läuft."}, {{"Die Straße ist schön, 🐕 läuft."}});
  EXPECT_DOUBLE_EQ(s.score, 100.0);
  EXPECT_EQ(s.sys_len, 8);
}

TEST(BleuTest, VersionIsConfigurable) {
  BleuOptions options;
  options.version = "2.4.0";
  auto s = CorpusBleu({"a"}, {{"a"}}, options);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->signature, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.4.0");
}

TEST(BleuTest, Errors) {
  EXPECT_EQ(CorpusBleu({"a", "b"}, {{"a"}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CorpusBleu({"a"}, {{"a"}, {"a", "b"}}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CorpusBleu({}, {{}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CorpusBleu({"a"}, {}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CorpusBleu({"a"}, {{""}}).status().code(), absl::StatusCode::kInvalidArgument);
  const auto bad = CorpusBleu({"ok", "bad \xFF"}, {{"ok", "ok"}});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("hypothesis line 2"), std::string::npos) << bad.status();
  EXPECT_NE(bad.status().message().find("byte offset 4"), std::string::npos) << bad.status();
  EXPECT_FALSE(CorpusBleu({"ok"}, {{"\xED\xA0\x80"}}).ok());
}

}  // namespace
}  // namespace quantmt::eval
