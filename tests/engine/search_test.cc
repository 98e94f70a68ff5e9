// Greedy and beam search: batching, beam 1 == greedy, n-best order and
// scores, length limits.
#include "decoding/search.h"

#include <gtest/gtest.h>

#include <cmath>

#include "tiny_model.h"

namespace quantmt {
namespace {

using testing::TinyConfig;
using testing::TinyModel;

const torch::Device kCpu(torch::kCPU);

std::vector<std::vector<int64_t>> Sources() {
  return {{5, 6, 7, 8, 9, 10, 3}, {11, 3}, {12, 13, 14, 3}, {20, 21, 22, 23, 24, 25, 26, 27, 3}};
}

// Sum of log-probabilities of `tokens` (+ EOS if finished), recomputed with
// teacher forcing: an independent check of the scores search reports.
double TeacherForcedLogProb(Transformer& model, const std::vector<int64_t>& source,
                            const SearchHypothesis& hypothesis) {
  torch::NoGradGuard no_grad;
  std::vector<int64_t> target_in = {model.config().bos_id};
  target_in.insert(target_in.end(), hypothesis.tokens.begin(), hypothesis.tokens.end());
  std::vector<int64_t> target_out = hypothesis.tokens;
  if (hypothesis.finished) {
    target_out.push_back(model.config().eos_id);
  } else {
    target_in.pop_back();
  }
  auto logits =
      model.Forward(torch::tensor(source).view({1, -1}), torch::tensor(target_in).view({1, -1}));
  auto log_probs = torch::log_softmax(logits[0], -1);
  double sum = 0;
  for (size_t t = 0; t < target_out.size(); ++t) sum += log_probs[t][target_out[t]].item<double>();
  return sum;
}

TEST(SearchTest, BatchOfMixedLengthsEqualsEachSentenceAlone) {
  for (int beam : {1, 4}) {
    auto model = TinyModel(TinyConfig());
    SearchOptions options;
    options.beam_size = beam;
    options.num_hypotheses = beam;
    options.max_length = 20;
    const auto sources = Sources();
    SearchResults batched = Search(*model, sources, options, kCpu);
    ASSERT_EQ(batched.size(), sources.size());
    for (size_t i = 0; i < sources.size(); ++i) {
      SearchResults alone = Search(*model, {sources[i]}, options, kCpu);
      ASSERT_EQ(alone[0].size(), batched[i].size()) << "beam " << beam << " sentence " << i;
      for (size_t k = 0; k < alone[0].size(); ++k) {
        EXPECT_EQ(alone[0][k].tokens, batched[i][k].tokens) << "beam " << beam << " sentence " << i;
        EXPECT_NEAR(alone[0][k].log_prob, batched[i][k].log_prob, 1e-4);
      }
    }
  }
}

TEST(SearchTest, BeamOfOneEqualsGreedy) {
  for (float penalty : {0.0f, 1.0f}) {
    auto model = TinyModel(TinyConfig(NormPosition::kPost));
    SearchOptions options;
    options.max_length = 25;
    options.length_penalty = penalty;
    SearchResults greedy = GreedySearch(*model, Sources(), options, kCpu);
    SearchResults beam = BeamSearch(*model, Sources(), options, kCpu);
    for (size_t i = 0; i < greedy.size(); ++i) {
      ASSERT_EQ(greedy[i].size(), 1u);
      ASSERT_EQ(beam[i].size(), 1u);
      EXPECT_EQ(greedy[i][0].tokens, beam[i][0].tokens);
      EXPECT_EQ(greedy[i][0].finished, beam[i][0].finished);
      EXPECT_NEAR(greedy[i][0].score, beam[i][0].score, 1e-5);
    }
  }
}

TEST(SearchTest, NBestIsSortedAndScoresAreLengthNormalizedLogProbs) {
  auto model = TinyModel(TinyConfig());
  SearchOptions options;
  options.beam_size = 5;
  options.num_hypotheses = 5;
  options.length_penalty = 0.6f;
  options.max_length = 12;
  const auto sources = Sources();
  SearchResults results = BeamSearch(*model, sources, options, kCpu);
  for (size_t i = 0; i < sources.size(); ++i) {
    ASSERT_EQ(results[i].size(), 5u);
    for (size_t k = 0; k < results[i].size(); ++k) {
      const SearchHypothesis& h = results[i][k];
      if (k > 0) {
        EXPECT_GE(results[i][k - 1].score, h.score);
      }
      const int64_t length = h.tokens.size() + (h.finished ? 1 : 0);
      EXPECT_NEAR(h.score, h.log_prob / std::pow(static_cast<double>(length), 0.6), 1e-5);
      EXPECT_NEAR(h.log_prob, TeacherForcedLogProb(*model, sources[i], h), 1e-3);
    }
  }
}

TEST(SearchTest, GreedyScoresAreTeacherForcedLogProbs) {
  auto model = TinyModel(TinyConfig(NormPosition::kPre, Activation::kGelu));
  SearchOptions options;
  options.max_length = 15;
  const auto sources = Sources();
  SearchResults results = GreedySearch(*model, sources, options, kCpu);
  for (size_t i = 0; i < sources.size(); ++i) {
    EXPECT_NEAR(results[i][0].log_prob, TeacherForcedLogProb(*model, sources[i], results[i][0]),
                1e-3);
  }
}

TEST(SearchTest, LengthLimitsAreRespected) {
  auto model = TinyModel(TinyConfig());
  for (int beam : {1, 3}) {
    SearchOptions options;
    options.beam_size = beam;
    options.min_length = options.max_length = 9;  // exactly 9 tokens
    for (const auto& nbest : Search(*model, Sources(), options, kCpu)) {
      ASSERT_FALSE(nbest.empty());
      EXPECT_EQ(nbest[0].tokens.size(), 9u);
      EXPECT_FALSE(nbest[0].finished);
      for (int64_t token : nbest[0].tokens) EXPECT_NE(token, model->config().eos_id);
    }
    options.min_length = 0;
    options.max_length = 3;
    for (const auto& nbest : Search(*model, Sources(), options, kCpu)) {
      EXPECT_LE(nbest[0].tokens.size(), 3u);
    }
  }
}

TEST(SearchTest, EmptyBatchGivesNoResults) {
  auto model = TinyModel(TinyConfig());
  EXPECT_TRUE(Search(*model, {}, SearchOptions(), kCpu).empty());
}

}  // namespace
}  // namespace quantmt
