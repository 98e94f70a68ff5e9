// The split decoder a GPU replica runs (greedy sentences on one decoder, beam
// search on another) gives each sentence plain search's result, whatever
// joins, leaves or is removed meanwhile. Here both halves are StepDecoders
// on the CPU; cuda_batch_decoder_test.cc puts CUDA graphs on the greedy side.
#include "decoding/batch_decoder.h"

#include <gtest/gtest.h>

#include "batch_decoder_schedule.h"
#include "decoding/step_decoder.h"
#include "tiny_model.h"

namespace quantmt {
namespace {

TEST(BatchDecoderTest, SplitDecoderGivesPlainSearchResults) {
  torch::NoGradGuard no_grad;
  auto model = testing::TinyModel(testing::TinyConfig(), 21);
  const torch::Device cpu(torch::kCPU);
  auto joining = testing::RandomJoining(14, 12, 50, 9, 3, 4);
  // One removed before its first step, one after two (it cannot finish
  // before its third token).
  joining[5].input.options.min_length = 3;
  const std::map<int64_t, int64_t> removed_at = {{joining[5].input.id, joining[5].step + 2},
                                                 {joining[9].input.id, joining[9].step}};
  auto decoder = MakeSplitBatchDecoder(std::make_unique<StepDecoder>(*model, cpu),
                                       std::make_unique<StepDecoder>(*model, cpu));
  const auto finished = testing::RunSchedule(*decoder, joining, removed_at);
  EXPECT_TRUE(decoder->empty());
  EXPECT_EQ(decoder->rows(), 0);
  EXPECT_EQ(finished.size(), joining.size() - removed_at.size());
  for (const testing::Joining& j : joining) {
    if (removed_at.count(j.input.id) > 0) continue;
    const auto found = finished.find(j.input.id);
    ASSERT_NE(found, finished.end()) << "sentence " << j.input.id;
    const SearchResults expected = Search(*model, {j.input.source}, j.input.options, cpu);
    ASSERT_EQ(found->second.size(), expected[0].size()) << "sentence " << j.input.id;
    for (size_t k = 0; k < expected[0].size(); ++k) {
      EXPECT_EQ(found->second[k].tokens, expected[0][k].tokens) << "sentence " << j.input.id;
      EXPECT_NEAR(found->second[k].log_prob, expected[0][k].log_prob, 1e-3);
    }
  }
}

TEST(BatchDecoderTest, SplitDecoderReportsBothHalves) {
  torch::NoGradGuard no_grad;
  auto model = testing::TinyModel(testing::TinyConfig(), 22);
  const torch::Device cpu(torch::kCPU);
  auto decoder = MakeSplitBatchDecoder(std::make_unique<StepDecoder>(*model, cpu),
                                       std::make_unique<StepDecoder>(*model, cpu));
  DecodeInput greedy{1, {5, 6, 7, 3}, {}};
  greedy.options.max_length = 9;
  DecodeInput beam{2, {5, 6, 7, 8, 9, 10, 3}, {}};
  beam.options.beam_size = 4;
  beam.options.max_length = 5;
  decoder->Add({greedy, beam});
  EXPECT_EQ(decoder->rows(), 1 + 4);
  EXPECT_EQ(decoder->padded_source_length(), 7);
  EXPECT_EQ(decoder->max_target_length(), 9);
  EXPECT_EQ(decoder->context_tokens(), 4 + 4 * 7);
  EXPECT_GT(decoder->cache_bytes(), 0);
  std::vector<int64_t> prefixes;
  decoder->ForEachBestPrefix(
      [&](int64_t id, const std::vector<int64_t>&) { prefixes.push_back(id); });
  EXPECT_EQ(prefixes, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(decoder->RemoveIf([](int64_t id) { return id == 2; }), (std::vector<int64_t>{2}));
  EXPECT_EQ(decoder->rows(), 1);
}

TEST(BatchDecoderTest, CpuModelsGetTheGeneralDecoder) {
  auto model = testing::TinyModel(testing::TinyConfig(), 23);
  auto decoder = MakeBatchDecoder(*model, torch::Device(torch::kCPU), true, 64, 0);
  EXPECT_NE(dynamic_cast<StepDecoder*>(decoder.get()), nullptr);
}

}  // namespace
}  // namespace quantmt
