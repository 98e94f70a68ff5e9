// Helpers for engine/scheduler tests on token ids: models built in memory
// (no tokenizer, so the tests also run under ThreadSanitizer, where
// SentencePiece cannot be loaded) and reference results from plain search.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "decoding/search.h"
#include "serving/engine_impl.h"
#include "serving/loaded_model.h"
#include "tiny_model.h"

namespace quantmt::testing {

// model_dir is the seed of a TinyConfig model; "fail" fails to load.
inline ModelRepository::Loader TinyLoader() {
  return [](const ModelSpec& spec) -> absl::StatusOr<std::shared_ptr<LoadedModel>> {
    if (spec.model_dir == "fail") return absl::DataLossError("fail: corrupt weights (test)");
    return PlaceModel(TinyModel(TinyConfig(), std::stoull(spec.model_dir)), spec.runtime,
                      spec.model_dir);
  };
}

inline ModelSpec TinySpec(const std::string& name, int seed = 7) {
  ModelSpec spec;
  spec.name = name;
  spec.model_dir = std::to_string(seed);
  spec.replicas = 1;
  spec.runtime.num_threads = 1;
  spec.scheduler.max_batch_wait = absl::ZeroDuration();
  return spec;
}

// Random sources of 1..max_length tokens (ids 4..49) ending with EOS (3).
inline std::vector<std::vector<int>> RandomSources(int count, int max_length, uint32_t seed) {
  std::mt19937 random(seed);
  std::vector<std::vector<int>> sources(count);
  for (auto& source : sources) {
    const int length = 1 + static_cast<int>(random() % max_length);
    for (int i = 0; i < length; ++i) source.push_back(4 + static_cast<int>(random() % 46));
    source.push_back(3);
  }
  return sources;
}

// Each source decoded alone by plain search on a fresh copy of the model.
inline std::vector<TranslationResult> Reference(const std::vector<std::vector<int>>& sources,
                                                const TranslationOptions& options, int seed = 7) {
  auto model = TinyModel(TinyConfig(), seed);
  const SearchOptions search = ToSearchOptions(options, model->config());
  std::vector<TranslationResult> results;
  for (const auto& source : sources) {
    SearchResults found = Search(*model, {std::vector<int64_t>(source.begin(), source.end())},
                                 search, torch::Device(torch::kCPU));
    TranslationResult result;
    for (const auto& h : found[0]) {
      Hypothesis hypothesis;
      hypothesis.token_ids.assign(h.tokens.begin(), h.tokens.end());
      hypothesis.log_prob = h.log_prob;
      hypothesis.score = h.score;
      result.hypotheses.push_back(hypothesis);
    }
    results.push_back(result);
  }
  return results;
}

inline void ExpectSameResults(const std::vector<TranslationResult>& expected,
                              const std::vector<TranslationResult>& actual) {
  ASSERT_EQ(expected.size(), actual.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(expected[i].hypotheses.size(), actual[i].hypotheses.size()) << "sentence " << i;
    for (size_t k = 0; k < expected[i].hypotheses.size(); ++k) {
      EXPECT_EQ(expected[i].hypotheses[k].token_ids, actual[i].hypotheses[k].token_ids)
          << "sentence " << i << " hypothesis " << k;
      // Scores may differ in the last digits: a sentence batched with others
      // runs through GEMMs of another shape, which the CPU kernels (oneDNN)
      // block and sum in another order. Tokens must be identical.
      const float expected_log_prob = expected[i].hypotheses[k].log_prob;
      EXPECT_NEAR(expected_log_prob, actual[i].hypotheses[k].log_prob,
                  std::max(1e-4, 2e-3 * std::abs(expected_log_prob)));
    }
  }
}

// A gate a test opens once; waiters block until then.
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

}  // namespace quantmt::testing
