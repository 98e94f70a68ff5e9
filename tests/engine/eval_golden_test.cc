// Our BLEU and chrF against the real sacreBLEU's numbers on the fixtures in
// tests/fixtures/eval/, recorded in golden.json by make_golden.py. Reads the
// fixtures through QUANTMT_SOURCE_DIR (set by ctest, see
// quantmt_add_test), and skips if golden.json has not been generated yet.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "quantmt/eval/bleu.h"
#include "quantmt/eval/chrf.h"

namespace quantmt::eval {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr double kTolerance = 0.01;

// Same rules as make_golden.py: byte-exact, split on '\n', the final newline
// ends the last line rather than starting an empty one.
std::vector<std::string> ReadLines(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.is_open()) << path;
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

// The fixture directory, or "" if QUANTMT_SOURCE_DIR is not set.
fs::path FixtureDir() {
  const char* source = std::getenv("QUANTMT_SOURCE_DIR");
  if (source == nullptr || *source == '\0') return {};
  return fs::path(source) / "tests" / "fixtures" / "eval";
}

struct Fixture {
  std::string name;
  std::vector<std::string> hyps;
  std::vector<std::vector<std::string>> refs;
};

// Every NAME.hyp with NAME.ref or NAME.ref1, NAME.ref2, ...
std::vector<Fixture> ScanFixtures(const fs::path& dir) {
  std::vector<Fixture> fixtures;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".hyp") continue;
    Fixture f;
    f.name = entry.path().stem().string();
    f.hyps = ReadLines(entry.path());
    if (fs::exists(dir / (f.name + ".ref"))) {
      f.refs.push_back(ReadLines(dir / (f.name + ".ref")));
    } else {
      for (int k = 1; fs::exists(dir / (f.name + ".ref" + std::to_string(k))); ++k) {
        f.refs.push_back(ReadLines(dir / (f.name + ".ref" + std::to_string(k))));
      }
    }
    fixtures.push_back(std::move(f));
  }
  std::sort(fixtures.begin(), fixtures.end(),
            [](const Fixture& a, const Fixture& b) { return a.name < b.name; });
  return fixtures;
}

// Runs with or without golden.json: every fixture is well-formed and scores.
TEST(EvalFixturesTest, AllFixturesScore) {
  const fs::path dir = FixtureDir();
  if (dir.empty()) GTEST_SKIP() << "QUANTMT_SOURCE_DIR not set (ctest sets it)";
  const std::vector<Fixture> fixtures = ScanFixtures(dir);
  EXPECT_GE(fixtures.size(), 4u);
  for (const Fixture& f : fixtures) {
    SCOPED_TRACE(f.name);
    ASSERT_FALSE(f.refs.empty());
    for (const auto& r : f.refs) ASSERT_EQ(r.size(), f.hyps.size());
    const auto bleu = CorpusBleu(f.hyps, f.refs);
    ASSERT_TRUE(bleu.ok()) << bleu.status();
    EXPECT_GT(bleu->score, 5.0);
    EXPECT_LT(bleu->score, 95.0);
    const auto chrf = CorpusChrf(f.hyps, f.refs);
    ASSERT_TRUE(chrf.ok()) << chrf.status();
    EXPECT_GT(chrf->score, 5.0);
    EXPECT_LT(chrf->score, 95.0);
  }
}

TEST(EvalGoldenTest, MatchesSacreBleu) {
  const fs::path dir = FixtureDir();
  if (dir.empty()) GTEST_SKIP() << "QUANTMT_SOURCE_DIR not set (ctest sets it)";
  const fs::path golden_path = dir / "golden.json";
  if (!fs::exists(golden_path)) {
    GTEST_SKIP() << golden_path << " does not exist yet: generate it with sacrebleu 2.6 by "
                 << "running python3 tests/fixtures/eval/make_golden.py";
  }
  std::ifstream in(golden_path);
  const json golden = json::parse(in, nullptr, /*allow_exceptions=*/false);
  ASSERT_FALSE(golden.is_discarded()) << golden_path << " is not valid JSON";
  const std::string version = golden.value("sacrebleu_version", "");
  ASSERT_FALSE(version.empty());
  ASSERT_TRUE(golden.contains("fixtures") && golden["fixtures"].is_array());

  const std::vector<Fixture> fixtures = ScanFixtures(dir);
  ASSERT_EQ(golden["fixtures"].size(), fixtures.size())
      << "golden.json is stale: fixtures were added or removed; rerun make_golden.py";
  for (const json& g : golden["fixtures"]) {
    const std::string name = g.at("name").get<std::string>();
    SCOPED_TRACE(name);
    const auto f = std::find_if(fixtures.begin(), fixtures.end(),
                                [&](const Fixture& x) { return x.name == name; });
    ASSERT_NE(f, fixtures.end());
    ASSERT_EQ(g.at("refs").size(), f->refs.size());

    BleuOptions bleu_options;
    bleu_options.version = version;
    const auto bleu = CorpusBleu(f->hyps, f->refs, bleu_options);
    ASSERT_TRUE(bleu.ok()) << bleu.status();
    const json& gb = g.at("bleu");
    EXPECT_NEAR(bleu->score, gb.at("score").get<double>(), kTolerance);
    for (size_t n = 0; n < 4; ++n) {
      EXPECT_NEAR(bleu->precisions[n], gb.at("precisions")[n].get<double>(), kTolerance) << n;
    }
    EXPECT_NEAR(bleu->bp, gb.at("bp").get<double>(), 1e-6);
    EXPECT_EQ(bleu->sys_len, gb.at("sys_len").get<int64_t>());
    EXPECT_EQ(bleu->ref_len, gb.at("ref_len").get<int64_t>());
    EXPECT_EQ(bleu->counts, gb.at("counts").get<std::vector<int64_t>>());
    EXPECT_EQ(bleu->totals, gb.at("totals").get<std::vector<int64_t>>());
    EXPECT_EQ(bleu->signature, gb.at("signature").get<std::string>());
    EXPECT_EQ(bleu->ToString(), gb.at("text").get<std::string>());

    ChrfOptions chrf_options;
    chrf_options.version = version;
    const auto chrf = CorpusChrf(f->hyps, f->refs, chrf_options);
    ASSERT_TRUE(chrf.ok()) << chrf.status();
    EXPECT_NEAR(chrf->score, g.at("chrf").at("score").get<double>(), kTolerance);
    EXPECT_EQ(chrf->signature, g.at("chrf").at("signature").get<std::string>());
    EXPECT_EQ(chrf->ToString(), g.at("chrf").at("text").get<std::string>());

    chrf_options.word_order = 2;
    const auto chrf_pp = CorpusChrf(f->hyps, f->refs, chrf_options);
    ASSERT_TRUE(chrf_pp.ok()) << chrf_pp.status();
    EXPECT_NEAR(chrf_pp->score, g.at("chrf_pp").at("score").get<double>(), kTolerance);
    EXPECT_EQ(chrf_pp->signature, g.at("chrf_pp").at("signature").get<std::string>());
  }
}

}  // namespace
}  // namespace quantmt::eval
