// The step-level decoder: sentences joining a running batch at different
// steps (per-row positions, masked caches, padded cross-attention) decode
// exactly as they do alone.
#include "decoding/step_decoder.h"

#include <gtest/gtest.h>

#include <map>

#include "tiny_model.h"

namespace quantmt {
namespace {

using testing::TinyConfig;
using testing::TinyModel;

const torch::Device kCpu(torch::kCPU);

std::vector<std::vector<int64_t>> Sources() {
  return {{5, 6, 7, 8, 9, 10, 3},
          {11, 3},
          {12, 13, 14, 3},
          {20, 21, 22, 23, 24, 25, 26, 27, 3},
          {30, 31, 3},
          {40, 41, 42, 43, 44, 3}};
}

SearchOptions Options(int beam, int max_length, int min_length = 0) {
  SearchOptions options;
  options.beam_size = beam;
  options.num_hypotheses = beam;
  options.max_length = max_length;
  options.min_length = min_length;
  options.length_penalty = 0.6f;
  return options;
}

void ExpectSame(const std::vector<SearchHypothesis>& expected,
                const std::vector<SearchHypothesis>& actual, const std::string& what) {
  ASSERT_EQ(expected.size(), actual.size()) << what;
  for (size_t k = 0; k < expected.size(); ++k) {
    EXPECT_EQ(expected[k].tokens, actual[k].tokens) << what << " hypothesis " << k;
    EXPECT_EQ(expected[k].finished, actual[k].finished) << what;
    EXPECT_NEAR(expected[k].log_prob, actual[k].log_prob, 1e-4) << what;
    EXPECT_NEAR(expected[k].score, actual[k].score, 1e-4) << what;
  }
}

// Adds sentence i at step joins[i], steps until all are done; checks each
// against the same sentence searched alone.
void CheckStaggeredJoins(Transformer& model, const std::vector<SearchOptions>& options,
                         const std::vector<int>& joins) {
  const auto sources = Sources();
  std::map<int64_t, std::vector<SearchHypothesis>> results;
  StepDecoder decoder(model, kCpu);
  size_t next = 0;
  for (int step = 0; next < sources.size() || !decoder.empty(); ++step) {
    std::vector<DecodeInput> joining;
    for (; next < sources.size() && joins[next] <= step; ++next) {
      joining.push_back({static_cast<int64_t>(next), sources[next], options[next]});
    }
    decoder.Add(joining);
    const int64_t bound =
        StepDecoder::CacheBytesBound(model.config(), 4, decoder.rows(),
                                     decoder.padded_source_length(), decoder.max_target_length());
    for (DecodeOutput& output : decoder.Step()) results[output.id] = output.hypotheses;
    EXPECT_LE(decoder.cache_bytes(), bound);
  }
  ASSERT_EQ(results.size(), sources.size());
  for (size_t i = 0; i < sources.size(); ++i) {
    SearchResults alone = Search(model, {sources[i]}, options[i], kCpu);
    ExpectSame(alone[0], results[i], "sentence " + std::to_string(i));
  }
}

TEST(StepDecoderTest, GreedySentencesJoiningARunningBatchDecodeAsAlone) {
  for (PositionEncoding positions : {PositionEncoding::kSinusoidal, PositionEncoding::kLearned}) {
    auto model = TinyModel(TinyConfig(NormPosition::kPre, Activation::kRelu, positions));
    CheckStaggeredJoins(*model, std::vector<SearchOptions>(6, Options(1, 20)), {0, 0, 2, 3, 3, 7});
  }
}

TEST(StepDecoderTest, BeamGroupsJoiningARunningBatchDecodeAsAlone) {
  auto model = TinyModel(TinyConfig(NormPosition::kPost));
  CheckStaggeredJoins(*model, std::vector<SearchOptions>(6, Options(3, 15)), {0, 1, 1, 4, 6, 6});
}

TEST(StepDecoderTest, SentencesWithDifferentOptionsShareABatch) {
  auto model = TinyModel(TinyConfig());
  CheckStaggeredJoins(*model,
                      {Options(1, 20), Options(4, 12), Options(1, 9, 9), Options(2, 18),
                       Options(4, 6, 3), Options(1, 25)},
                      {0, 0, 1, 2, 2, 5});
}

TEST(StepDecoderTest, RemovedSentencesLeaveTheOthersUnchanged) {
  auto model = TinyModel(TinyConfig());
  const auto sources = Sources();
  const SearchOptions options = Options(2, 20);
  StepDecoder decoder(*model, kCpu);
  std::vector<DecodeInput> inputs;
  for (size_t i = 0; i < sources.size(); ++i) {
    inputs.push_back({static_cast<int64_t>(i), sources[i], options});
  }
  decoder.Add(inputs);
  std::map<int64_t, std::vector<SearchHypothesis>> results;
  for (int step = 0; !decoder.empty(); ++step) {
    if (step == 2) {
      auto removed = decoder.RemoveIf([](int64_t id) { return id == 1 || id == 3; });
      EXPECT_EQ(removed, (std::vector<int64_t>{1, 3}));
    }
    for (DecodeOutput& output : decoder.Step()) results[output.id] = output.hypotheses;
  }
  EXPECT_EQ(results.count(1) + results.count(3), 0u);
  for (int64_t i : {0, 2, 4, 5}) {
    ExpectSame(Search(*model, {sources[i]}, options, kCpu)[0], results.at(i),
               "sentence " + std::to_string(i));
  }
}

TEST(StepDecoderTest, PaddingOfSentencesThatLeftIsDropped) {
  auto model = TinyModel(TinyConfig());
  StepDecoder decoder(*model, kCpu);
  // The long source finishes after one token; the short one runs on.
  decoder.Add(
      {{0, {20, 21, 22, 23, 24, 25, 26, 27, 3}, Options(1, 1)}, {1, {11, 3}, Options(1, 10, 10)}});
  EXPECT_EQ(decoder.padded_source_length(), 9);
  auto done = decoder.Step();
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].id, 0);
  EXPECT_EQ(decoder.padded_source_length(), 2);
  EXPECT_EQ(decoder.rows(), 1);
  EXPECT_EQ(decoder.context_tokens(), 2 + 1);
}

}  // namespace
}  // namespace quantmt
