// The continuous-batching CUDA graph decoder gives each sentence eager greedy
// (or beam) search's result on the same GPU, whatever joins, leaves or is removed
// meanwhile (sentences join at random steps, buffers grow, graphs are
// captured for new shapes); and a GPU model served by the engine returns
// those results too. Skips without a GPU.
#include "decoding/cuda_batch_decoder.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>

#include "batch_decoder_schedule.h"
#include "decoding/step_decoder.h"
#include "serving_test_util.h"
#include "tiny_model.h"

namespace quantmt {
namespace {

TEST(CudaBatchDecoderTest, RefusesModelsItCannotRun) {
  auto model = testing::TinyModel(testing::TinyConfig());
  auto on_cpu = CreateCudaBatchDecoder(*model);
  ASSERT_FALSE(on_cpu.ok());
  if (absl::IsUnimplemented(on_cpu.status())) GTEST_SKIP() << "built without CUDA";
  EXPECT_TRUE(absl::IsFailedPrecondition(on_cpu.status())) << on_cpu.status();
}

using Finished = std::map<int64_t, std::vector<SearchHypothesis>>;

// Runs `joining` (minus `removed_at`) through a CudaBatchDecoder of each
// variant: graphs or op by op, an unbound cache (rows double from 8) or a
// tight one (buffers always sized to the batch), at most 6 graphs (dropped
// and captured again). Each variant's finished sentences go to `check`.
void ForEachVariant(Transformer& model, bool beam_search,
                    const std::vector<testing::Joining>& joining,
                    const std::map<int64_t, int64_t>& removed_at, const std::string& name,
                    const std::function<void(const Finished&, const std::string&)>& check) {
  for (bool graphs : {true, false}) {
    for (int64_t max_cache : {int64_t{0}, int64_t{1}}) {
      CudaBatchDecoderOptions options;
      options.beam_search = beam_search;
      options.capture_graphs = graphs;
      options.max_cache_bytes = max_cache;
      options.max_rows = 8;
      options.max_graphs = 6;
      auto decoder = CreateCudaBatchDecoder(model, options);
      ASSERT_TRUE(decoder.ok()) << decoder.status();
      const std::string what =
          name + (graphs ? ", graphs" : ", op by op") + (max_cache > 0 ? ", tight cache" : "");
      const Finished finished = testing::RunSchedule(**decoder, joining, removed_at);
      EXPECT_TRUE((*decoder)->empty()) << what;
      ASSERT_EQ(finished.size(), joining.size() - removed_at.size()) << what;
      check(finished, what);
    }
  }
}

void ExpectGreedyResults(Transformer& model, const std::vector<testing::Joining>& joining,
                         const std::map<int64_t, int64_t>& removed_at, const Finished& finished,
                         const std::string& what) {
  for (const testing::Joining& j : joining) {
    if (removed_at.count(j.input.id) > 0) continue;
    const auto found = finished.find(j.input.id);
    ASSERT_NE(found, finished.end()) << what << ", sentence " << j.input.id;
    const SearchResults expected =
        GreedySearch(model, {j.input.source}, j.input.options, torch::kCUDA);
    ASSERT_EQ(found->second.size(), 1u);
    const SearchHypothesis& e = expected[0][0];
    const SearchHypothesis& a = found->second[0];
    EXPECT_EQ(e.tokens, a.tokens) << what << ", sentence " << j.input.id;
    EXPECT_EQ(e.finished, a.finished) << what << ", sentence " << j.input.id;
    EXPECT_NEAR(e.log_prob, a.log_prob, 1e-4) << what << ", sentence " << j.input.id;
    EXPECT_NEAR(e.score, a.score, 1e-4) << what << ", sentence " << j.input.id;
  }
}

TEST(CudaBatchDecoderTest, MatchesEagerGreedyWhileSentencesJoinAndLeave) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::NoGradGuard no_grad;
  const std::vector<ModelConfig> configs = testing::VariedTinyConfigs();
  for (size_t c = 0; c < configs.size(); ++c) {
    auto model = testing::TinyModel(configs[c], 31 + c);
    model->to(torch::kCUDA);
    // 40 sentences over 30 steps: the rows outgrow the buffers (8, then 16
    // and 32; with the tight bound every growth reallocates at the batch's
    // lengths), shapes change, and the batch empties and refills.
    auto joining = testing::RandomJoining(40, 40, 50, 30, 0, 7 + c);
    joining[3].input.options.min_length = 3;
    const std::map<int64_t, int64_t> removed_at = {{joining[3].input.id, joining[3].step + 2},
                                                   {joining[20].input.id, joining[20].step}};
    ForEachVariant(*model, /*beam_search=*/false, joining, removed_at,
                   "config " + std::to_string(c),
                   [&](const Finished& finished, const std::string& what) {
                     ExpectGreedyResults(*model, joining, removed_at, finished, what);
                   });
  }
}

TEST(CudaBatchDecoderTest, BeamSearchOnGraphsMatchesEagerBeamSearch) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  torch::NoGradGuard no_grad;
  const std::vector<ModelConfig> configs = testing::VariedTinyConfigs();
  for (size_t c = 0; c < configs.size(); ++c) {
    auto model = testing::TinyModel(configs[c], 51 + c);
    model->to(torch::kCUDA);
    // Beams of 2 to 5 (rows per sentence differ), one or two hypotheses;
    // sentences join at random steps, two are removed midway.
    auto joining = testing::RandomJoining(24, 30, 50, 20, 1, 17 + c);
    for (size_t i = 0; i < joining.size(); ++i) {
      joining[i].input.options.beam_size = 2 + static_cast<int>(joining[i].input.id % 4);
      joining[i].input.options.num_hypotheses = 1 + static_cast<int>(joining[i].input.id % 2);
    }
    const std::map<int64_t, int64_t> removed_at = {{joining[2].input.id, joining[2].step + 2},
                                                   {joining[10].input.id, joining[10].step}};
    ForEachVariant(*model, /*beam_search=*/true, joining, removed_at, "config " + std::to_string(c),
                   [&](const Finished& finished, const std::string& what) {
                     for (const testing::Joining& j : joining) {
                       if (removed_at.count(j.input.id) > 0) continue;
                       const std::string sentence =
                           what + ", sentence " + std::to_string(j.input.id);
                       const SearchResults expected =
                           BeamSearch(*model, {j.input.source}, j.input.options, torch::kCUDA);
                       const auto& actual = finished.at(j.input.id);
                       ASSERT_EQ(actual.size(), expected[0].size()) << sentence;
                       for (size_t k = 0; k < actual.size(); ++k) {
                         EXPECT_EQ(actual[k].tokens, expected[0][k].tokens)
                             << sentence << ", hypothesis " << k;
                         EXPECT_EQ(actual[k].finished, expected[0][k].finished) << sentence;
                         EXPECT_NEAR(actual[k].log_prob, expected[0][k].log_prob, 1e-3) << sentence;
                         EXPECT_NEAR(actual[k].score, expected[0][k].score, 1e-3) << sentence;
                       }
                     }
                   });
  }
}

TEST(CudaBatchDecoderTest, EachKindRefusesTheOther) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto model = testing::TinyModel(testing::TinyConfig(), 41);
  model->to(torch::kCUDA);
  CudaBatchDecoderOptions options;
  options.beam_search = true;
  auto decoder = CreateCudaBatchDecoder(*model, options);
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  DecodeInput greedy{1, {5, 6, 3}, {}};
  EXPECT_THROW((*decoder)->Add({greedy}), std::invalid_argument);
  DecodeInput too_wide{2, {5, 6, 3}, {}};
  too_wide.options.beam_size = 65;
  EXPECT_THROW((*decoder)->Add({too_wide}), std::invalid_argument);
  EXPECT_TRUE((*decoder)->empty());
}

TEST(CudaBatchDecoderTest, BeamSearchIsRefusedAndGpuReplicasRouteIt) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  auto model = testing::TinyModel(testing::TinyConfig(), 41);
  model->to(torch::kCUDA);
  auto decoder = CreateCudaBatchDecoder(*model);
  ASSERT_TRUE(decoder.ok()) << decoder.status();
  DecodeInput beam{1, {5, 6, 3}, {}};
  beam.options.beam_size = 2;
  EXPECT_THROW((*decoder)->Add({beam}), std::invalid_argument);
  EXPECT_TRUE((*decoder)->empty());
  // A replica's decoder takes both: beam search runs on the general half.
  auto mixed = MakeBatchDecoder(*model, torch::kCUDA, true, 8, 0);
  EXPECT_EQ(dynamic_cast<StepDecoder*>(mixed.get()), nullptr) << "no graph decoder on a GPU";
  auto joining = testing::RandomJoining(12, 10, 50, 5, 4, 3);
  const auto finished = testing::RunSchedule(*mixed, joining, {});
  ASSERT_EQ(finished.size(), joining.size());
  for (const testing::Joining& j : joining) {
    const SearchResults expected = Search(*model, {j.input.source}, j.input.options, torch::kCUDA);
    const auto& actual = finished.at(j.input.id);
    ASSERT_EQ(actual.size(), expected[0].size()) << "sentence " << j.input.id;
    for (size_t k = 0; k < actual.size(); ++k) {
      EXPECT_EQ(actual[k].tokens, expected[0][k].tokens) << "sentence " << j.input.id;
    }
  }
}

TEST(CudaBatchDecoderTest, EngineOnTheGpuGivesPlainSearchResults) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const auto sources = testing::RandomSources(24, 14, 9);
  TranslationOptions greedy;
  greedy.beam_size = 1;
  greedy.max_length = 20;
  auto model = testing::TinyModel(testing::TinyConfig(), 7);
  model->to(torch::kCUDA);
  SearchOptions search = ToSearchOptions(greedy, model->config());
  std::vector<TranslationResult> expected;
  for (const auto& source : sources) {
    SearchResults found = GreedySearch(*model, {std::vector<int64_t>(source.begin(), source.end())},
                                       search, torch::kCUDA);
    TranslationResult result;
    Hypothesis hypothesis;
    hypothesis.token_ids.assign(found[0][0].tokens.begin(), found[0][0].tokens.end());
    hypothesis.log_prob = found[0][0].log_prob;
    hypothesis.score = found[0][0].score;
    result.hypotheses.push_back(hypothesis);
    expected.push_back(result);
  }
  auto engine = CreateEngine({}, testing::TinyLoader());
  ModelSpec spec = testing::TinySpec("tiny-gpu", 7);
  spec.runtime.device = DeviceKind::kCuda;
  spec.runtime.compute_type = "float32";
  spec.scheduler.max_batch_sentences = 8;  // sentences join a running batch
  ASSERT_TRUE(engine->LoadModel(spec).ok());
  TranslationRequest request;
  for (const auto& source : sources) request.source_ids.push_back(source);
  request.options = greedy;
  RequestOutcome outcome = engine->TranslateSync("tiny-gpu", std::move(request));
  ASSERT_TRUE(outcome.results.ok()) << outcome.results.status();
  testing::ExpectSameResults(expected, *outcome.results);
}

}  // namespace
}  // namespace quantmt
