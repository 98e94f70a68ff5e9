// Many threads at once: submissions from several threads, several replicas,
// models replaced and unloaded while requests run. Every request completes
// exactly once, with the right result or a clean refusal. Part of the
// ThreadSanitizer run (token ids only; see serving_test_util.h).
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <thread>

#include "serving_test_util.h"

namespace quantmt {
namespace {

using testing::ExpectSameResults;
using testing::RandomSources;
using testing::Reference;
using testing::TinyLoader;
using testing::TinySpec;

// Counts completions and checks each against its expected result.
class Tracker {
 public:
  TranslationDone Expect(std::vector<TranslationResult> expected) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++submitted_;
    }
    return [this, expected = std::move(expected)](RequestOutcome outcome) {
      if (outcome.results.ok()) ExpectSameResults(expected, *outcome.results);
      std::lock_guard<std::mutex> lock(mu_);
      ++codes_[outcome.results.status().code()];
      ++completed_;
      cv_.notify_all();
    };
  }
  void WaitAll() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return completed_ == submitted_; });
  }
  std::map<absl::StatusCode, int> codes() {
    std::lock_guard<std::mutex> lock(mu_);
    return codes_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int submitted_ = 0;
  int completed_ = 0;
  std::map<absl::StatusCode, int> codes_;
};

TranslationRequest IdsRequest(std::vector<std::vector<int>> sources, int beam) {
  TranslationRequest request;
  request.source_ids = std::move(sources);
  request.options.beam_size = beam;
  request.options.max_length = 16;
  return request;
}

TEST(SchedulerConcurrencyTest, ManyThreadsSubmittingAtOnceGetTheirOwnResults) {
  constexpr int kThreads = 6;
  constexpr int kRequestsPerThread = 5;
  std::vector<std::vector<std::vector<int>>> sources;
  std::vector<std::vector<TranslationResult>> expected;
  for (int r = 0; r < kThreads * kRequestsPerThread; ++r) {
    sources.push_back(RandomSources(1 + r % 3, 10, 100 + r));
    expected.push_back(Reference(sources.back(), IdsRequest({}, 1 + r % 2).options));
  }
  auto engine = CreateEngine({}, TinyLoader());
  ModelSpec spec = TinySpec("tiny");
  spec.replicas = 2;
  spec.scheduler.max_batch_sentences = 8;
  ASSERT_TRUE(engine->LoadModel(spec).ok());

  Tracker tracker;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int k = 0; k < kRequestsPerThread; ++k) {
        const int r = t * kRequestsPerThread + k;
        engine->Translate("tiny", IdsRequest(sources[r], 1 + r % 2), tracker.Expect(expected[r]));
      }
    });
  }
  for (auto& thread : threads) thread.join();
  tracker.WaitAll();
  EXPECT_EQ(tracker.codes()[absl::StatusCode::kOk], kThreads * kRequestsPerThread);
}

TEST(SchedulerConcurrencyTest, LoadAndUnloadWhileRequestsRunLoseNone) {
  const auto sources = RandomSources(4, 10, 7);
  std::vector<std::vector<TranslationResult>> expected;
  for (const auto& source : sources)
    expected.push_back(Reference({source}, IdsRequest({}, 1).options));
  auto engine = CreateEngine({}, TinyLoader());
  ASSERT_TRUE(engine->LoadModel(TinySpec("tiny")).ok());

  Tracker tracker;
  std::atomic<bool> stop{false};
  std::vector<std::thread> submitters;
  for (int t = 0; t < 3; ++t) {
    submitters.emplace_back([&, t] {
      for (int k = 0; !stop.load(); ++k) {
        const size_t i = (t + k) % sources.size();
        engine->Translate("tiny", IdsRequest({sources[i]}, 1), tracker.Expect(expected[i]));
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  // Replace the model (same weights: results must not change) while
  // requests run, then unload it.
  for (int round = 0; round < 3; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(30));
    ModelSpec spec = TinySpec("tiny");
    spec.replicas = 1 + round % 2;
    ASSERT_TRUE(engine->LoadModel(spec).ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(30));
  ASSERT_TRUE(engine->UnloadModel("tiny").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(10));
  stop.store(true);
  for (auto& thread : submitters) thread.join();
  tracker.WaitAll();

  auto codes = tracker.codes();
  EXPECT_GT(codes[absl::StatusCode::kOk], 0);
  // Accepted requests all finished; the others were refused cleanly: after
  // the unload began, or while the queue was full (the submitters outpace a
  // slow machine, e.g. under ThreadSanitizer).
  for (const auto& [code, count] : codes) {
    EXPECT_TRUE(code == absl::StatusCode::kOk || code == absl::StatusCode::kNotFound ||
                code == absl::StatusCode::kUnavailable ||
                code == absl::StatusCode::kResourceExhausted)
        << absl::StatusCodeToString(code) << " x" << count;
  }
}

TEST(SchedulerConcurrencyTest, ShutdownCancelsWhatOutlivesTheGraceAndRefusesNewWork) {
  auto engine = CreateEngine({}, TinyLoader());
  ModelSpec spec = TinySpec("tiny");
  spec.replicas = 2;
  ASSERT_TRUE(engine->LoadModel(spec).ok());
  Tracker tracker;
  for (int i = 0; i < 6; ++i) {
    TranslationRequest request = IdsRequest({{5, 6, 3}}, 1);
    request.options.max_length = request.options.min_length = 64;
    engine->Translate("tiny", std::move(request), tracker.Expect({}));
  }
  engine->Shutdown(absl::ZeroDuration());
  tracker.WaitAll();
  auto codes = tracker.codes();
  EXPECT_EQ(codes[absl::StatusCode::kOk] + codes[absl::StatusCode::kCancelled], 6);
  EXPECT_GT(codes[absl::StatusCode::kCancelled], 0);
  RequestOutcome late = engine->TranslateSync("tiny", IdsRequest({{5, 3}}, 1));
  EXPECT_EQ(late.results.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(engine->LoadModel(TinySpec("again")).code(), absl::StatusCode::kUnavailable);
}

}  // namespace
}  // namespace quantmt
