// chrF on cases small enough to check by hand; sacreBLEU agreement on larger
// text is eval_golden_test's job.
#include "quantmt/eval/chrf.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace quantmt::eval {
namespace {

using Refs = std::vector<std::vector<std::string>>;

double Chrf(const std::vector<std::string>& hyps, const Refs& refs, ChrfOptions options = {}) {
  auto score = CorpusChrf(hyps, refs, options);
  EXPECT_TRUE(score.ok()) << score.status();
  return score.ok() ? score->score : -1;
}

TEST(ChrfTest, PerfectMatchIs100) {
  auto s = CorpusChrf({"Der Hund läuft.", "Ein 🐕!"}, {{"Der Hund läuft.", "Ein 🐕!"}});
  ASSERT_TRUE(s.ok());
  EXPECT_DOUBLE_EQ(s->score, 100.0);
  EXPECT_EQ(s->ToString(), "chrF2 = 100.00");
  EXPECT_EQ(s->signature, "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0");
}

TEST(ChrfTest, EmptyHypothesisIsZero) { EXPECT_EQ(Chrf({""}, {{"the cat"}}), 0.0); }

TEST(ChrfTest, NoOverlapIsZero) { EXPECT_EQ(Chrf({"abc"}, {{"xyz"}}), 0.0); }

TEST(ChrfTest, HandComputed) {
  // 1-grams P=1 R=2/3, 2-grams P=1 R=1/2; higher orders have no hypothesis
  // n-grams and drop out. F2 = 5*P*R/(4P+R) with P=1, R=7/12 -> 35/55.
  EXPECT_NEAR(Chrf({"ab"}, {{"abc"}}), 100.0 * 35 / 55, 1e-9);
}

TEST(ChrfTest, WhitespaceIsIgnored) {
  EXPECT_DOUBLE_EQ(Chrf({"a b  c"}, {{"abc"}}), 100.0);
  // Python's whitespace: NO-BREAK SPACE is removed, ZERO WIDTH SPACE is a char.
  EXPECT_DOUBLE_EQ(Chrf({"a\u00A0b"}, {{"ab"}}), 100.0);
  EXPECT_NEAR(Chrf({"a\u200Bb"}, {{"ab"}}), 100.0 * 5 / 11, 1e-9);
}

TEST(ChrfTest, CodePointsNotBytes) {
  // "ü" is one character: 1-grams 1/2, 2-grams 0/1 -> P = R = 1/4.
  EXPECT_NEAR(Chrf({"üa"}, {{"üb"}}), 25.0, 1e-9);
}

TEST(ChrfTest, CorpusSumsStatisticsBeforeScoring) {
  // Not the mean of the two sentence scores.
  EXPECT_NEAR(Chrf({"the cat sat", "a dog"}, {{"the cat sat on the mat", "a dog barks"}}),
              42.77357092686493, 1e-9);
}

TEST(ChrfTest, MultipleReferencesPickBestPerSegment) {
  const double single = Chrf({"the cat"}, {{"the cat!"}});
  EXPECT_DOUBLE_EQ(Chrf({"the cat"}, {{"a dog"}, {"the cat!"}}), single);
  EXPECT_NEAR(single, 77.57103344229319, 1e-9);
}

TEST(ChrfTest, ChrfPlusPlus) {
  ChrfOptions options;
  options.word_order = 2;
  auto s =
      CorpusChrf({"the cat sat", "a dog"}, {{"the cat sat on the mat", "a dog barks"}}, options);
  ASSERT_TRUE(s.ok());
  EXPECT_NEAR(s->score, 45.832962131242724, 1e-9);
  EXPECT_EQ(s->ToString(), "chrF2++ = 45.83");
  EXPECT_EQ(s->signature, "nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.6.0");
}

TEST(ChrfTest, Errors) {
  EXPECT_EQ(CorpusChrf({"a", "b"}, {{"a"}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CorpusChrf({}, {{}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CorpusChrf({"a"}, {{""}}).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(CorpusChrf({"\xC3"}, {{"a"}}).ok());
  ChrfOptions bad;
  bad.char_order = 0;
  EXPECT_FALSE(CorpusChrf({"a"}, {{"a"}}, bad).ok());
  bad.char_order = 6;
  bad.word_order = -1;
  EXPECT_FALSE(CorpusChrf({"a"}, {{"a"}}, bad).ok());
}

}  // namespace
}  // namespace quantmt::eval
