// The engine's scheduler on token ids: batching never changes results, and
// queue-full, deadlines, cancellation, streaming, cache bounds and observer
// hooks behave as engine.h states.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <thread>

#include "serving_test_util.h"

namespace quantmt {
namespace {

using testing::ExpectSameResults;
using testing::Gate;
using testing::RandomSources;
using testing::Reference;
using testing::TinyLoader;
using testing::TinySpec;

class RecordingObserver : public EngineObserver {
 public:
  void OnBatch(const std::string& model, int sentences, int tokens) override {
    std::lock_guard<std::mutex> lock(mu_);
    max_rows_ = std::max(max_rows_, sentences);
    ++batches_;
  }
  void OnRequestDone(const std::string& model, const absl::Status& status,
                     const RequestTimings& timings) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++done_[status.code()];
  }
  int max_rows() {
    std::lock_guard<std::mutex> lock(mu_);
    return max_rows_;
  }
  int batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  int done(absl::StatusCode code) {
    std::lock_guard<std::mutex> lock(mu_);
    return done_[code];
  }

 private:
  std::mutex mu_;
  int max_rows_ = 0;
  int batches_ = 0;
  std::map<absl::StatusCode, int> done_;
};

TranslationOptions Greedy(int max_length = 20) {
  TranslationOptions options;
  options.beam_size = 1;
  options.max_length = max_length;
  return options;
}

TranslationRequest IdsRequest(std::vector<std::vector<int>> sources, TranslationOptions options) {
  TranslationRequest request;
  request.source_ids = std::move(sources);
  request.options = options;
  return request;
}

// Submits each source as its own request, all at once, and collects results.
std::vector<TranslationResult> TranslateEach(Engine& engine, const std::string& model,
                                             const std::vector<std::vector<int>>& sources,
                                             const TranslationOptions& options,
                                             const std::vector<size_t>& order) {
  std::vector<TranslationResult> results(sources.size());
  std::mutex mu;
  std::condition_variable cv;
  size_t finished = 0;
  for (size_t i : order) {
    engine.Translate(model, IdsRequest({sources[i]}, options), [&, i](RequestOutcome outcome) {
      std::lock_guard<std::mutex> lock(mu);
      EXPECT_TRUE(outcome.results.ok()) << outcome.results.status();
      if (outcome.results.ok()) results[i] = (*outcome.results)[0];
      ++finished;
      cv.notify_all();
    });
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished == sources.size(); });
  return results;
}

TEST(SchedulerBehaviourTest, BatchingNeverChangesResults) {
  const auto sources = RandomSources(16, 12, 1);
  TranslationOptions beam = Greedy();
  beam.beam_size = 3;
  beam.num_hypotheses = 2;
  for (const TranslationOptions& options : {Greedy(), beam}) {
    const auto expected = Reference(sources, options);
    for (bool continuous : {true, false}) {
      for (int max_batch : {1, 5, 64}) {
        auto engine = CreateEngine({}, TinyLoader());
        ModelSpec spec = TinySpec("tiny");
        spec.scheduler.continuous_batching = continuous;
        spec.scheduler.max_batch_sentences = max_batch * options.beam_size;
        ASSERT_TRUE(engine->LoadModel(spec).ok());
        SCOPED_TRACE(::testing::Message() << "beam " << options.beam_size << " continuous "
                                          << continuous << " batch " << max_batch);
        RequestOutcome one = engine->TranslateSync("tiny", IdsRequest(sources, options));
        ASSERT_TRUE(one.results.ok()) << one.results.status();
        ExpectSameResults(expected, *one.results);
        std::vector<size_t> order(sources.size());
        for (size_t i = 0; i < order.size(); ++i) order[i] = i;
        ExpectSameResults(expected, TranslateEach(*engine, "tiny", sources, options, order));
      }
    }
  }
}

TEST(SchedulerBehaviourTest, OrderOfSubmissionAndCompletionDoesNotChangeResults) {
  const auto sources = RandomSources(20, 14, 2);
  const auto expected = Reference(sources, Greedy());
  auto engine = CreateEngine({}, TinyLoader());
  ModelSpec spec = TinySpec("tiny");
  spec.replicas = 2;
  spec.scheduler.max_batch_sentences = 4;
  ASSERT_TRUE(engine->LoadModel(spec).ok());
  std::vector<size_t> order(sources.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  ExpectSameResults(expected, TranslateEach(*engine, "tiny", sources, Greedy(), order));
  std::reverse(order.begin(), order.end());
  ExpectSameResults(expected, TranslateEach(*engine, "tiny", sources, Greedy(), order));
  std::shuffle(order.begin(), order.end(), std::mt19937(3));
  ExpectSameResults(expected, TranslateEach(*engine, "tiny", sources, Greedy(), order));
}

// A long request whose first token event blocks its replica until the test
// opens `release`; `started` opens when that happens.
void SubmitBlocker(Engine& engine, Gate* started, Gate* release, RequestOutcome* outcome,
                   Gate* finished) {
  TranslationOptions options = Greedy(40);
  options.min_length = 40;
  TranslationRequest request = IdsRequest({{5, 6, 3}}, options);
  auto first = std::make_shared<std::atomic<bool>>(true);
  request.on_token = [=](const TokenEvent&) {
    if (first->exchange(false)) {
      started->Open();
      release->Wait();
    }
  };
  engine.Translate("tiny", std::move(request), [=](RequestOutcome result) {
    *outcome = std::move(result);
    finished->Open();
  });
}

TEST(SchedulerBehaviourTest, FullQueueRefusesAtOnceAndDeadlinesDropQueuedRequests) {
  RecordingObserver observer;
  auto engine = CreateEngine({&observer}, TinyLoader());
  ModelSpec spec = TinySpec("tiny");
  spec.scheduler.max_queued_sentences = 3;
  ASSERT_TRUE(engine->LoadModel(spec).ok());

  Gate started, release, blocker_done;
  RequestOutcome blocker;
  SubmitBlocker(*engine, &started, &release, &blocker, &blocker_done);
  started.Wait();  // the only replica is busy; the queue is empty

  Gate queued_done;
  RequestOutcome queued;
  engine->Translate("tiny", IdsRequest({{7, 3}, {8, 9, 3}}, Greedy()), [&](RequestOutcome r) {
    queued = std::move(r);
    queued_done.Open();
  });
  Gate expiring_done;
  RequestOutcome expiring;
  TranslationRequest with_deadline = IdsRequest({{10, 3}}, Greedy());
  with_deadline.deadline = absl::Now() + absl::Milliseconds(20);
  engine->Translate("tiny", std::move(with_deadline), [&](RequestOutcome r) {
    expiring = std::move(r);
    expiring_done.Open();
  });

  // The queue holds 3 sentences: one more is refused on this thread.
  bool refused_now = false;
  engine->Translate("tiny", IdsRequest({{11, 3}}, Greedy()), [&](RequestOutcome r) {
    EXPECT_EQ(r.results.status().code(), absl::StatusCode::kResourceExhausted)
        << r.results.status();
    refused_now = true;
  });
  EXPECT_TRUE(refused_now);

  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  release.Open();
  blocker_done.Wait();
  queued_done.Wait();
  expiring_done.Wait();
  EXPECT_TRUE(blocker.results.ok()) << blocker.results.status();
  EXPECT_EQ((*blocker.results)[0].hypotheses[0].token_ids.size(), 40u);
  ASSERT_TRUE(queued.results.ok()) << queued.results.status();
  ExpectSameResults(Reference({{7, 3}, {8, 9, 3}}, Greedy()), *queued.results);
  EXPECT_EQ(expiring.results.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_EQ(expiring.timings.compute, absl::ZeroDuration()) << "it never ran";
  engine->Shutdown(absl::Seconds(10));
  EXPECT_EQ(observer.done(absl::StatusCode::kOk), 2);
  EXPECT_EQ(observer.done(absl::StatusCode::kResourceExhausted), 1);
  EXPECT_EQ(observer.done(absl::StatusCode::kDeadlineExceeded), 1);
}

TEST(SchedulerBehaviourTest, CancelledRequestStopsAtTheNextStep) {
  auto engine = CreateEngine({}, TinyLoader());
  ASSERT_TRUE(engine->LoadModel(TinySpec("tiny")).ok());
  for (int beam : {1, 4}) {
    TranslationOptions options = Greedy(60);
    options.beam_size = beam;
    options.min_length = 60;
    TranslationRequest request = IdsRequest({{5, 6, 7, 3}}, options);
    request.cancellation = std::make_shared<CancellationToken>();
    int events = 0;
    request.on_token = [&events, token = request.cancellation](const TokenEvent&) {
      if (++events == 3) token->Cancel();
    };
    RequestOutcome outcome = engine->TranslateSync("tiny", std::move(request));
    EXPECT_EQ(outcome.results.status().code(), absl::StatusCode::kCancelled);
    EXPECT_EQ(events, 3) << "no step ran after the cancellation";
    // The emptied batch leaves the gauges too (set just after the removal).
    const absl::Time until = absl::Now() + absl::Seconds(5);
    while (engine->GetModel("tiny")->running_sentences != 0 && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    EXPECT_EQ(engine->GetModel("tiny")->running_sentences, 0);
    EXPECT_EQ(engine->GetModel("tiny")->cache_bytes, 0);
  }
  // The model keeps serving.
  EXPECT_TRUE(engine->TranslateSync("tiny", IdsRequest({{5, 3}}, Greedy())).results.ok());
}

TEST(SchedulerBehaviourTest, StreamsGrowingPrefixesThenTheResult) {
  auto engine = CreateEngine({}, TinyLoader());
  ASSERT_TRUE(engine->LoadModel(TinySpec("tiny")).ok());
  const std::vector<std::vector<int>> sources = {{5, 6, 7, 3}, {20, 21, 3}};
  TranslationRequest request = IdsRequest(sources, Greedy(15));
  std::map<int, std::vector<TokenEvent>> events;
  request.on_token = [&](const TokenEvent& event) {
    events[event.sentence_index].push_back(event);
  };
  RequestOutcome outcome = engine->TranslateSync("tiny", std::move(request));
  ASSERT_TRUE(outcome.results.ok());
  for (int i = 0; i < 2; ++i) {
    const auto& final_tokens = (*outcome.results)[i].hypotheses[0].token_ids;
    ASSERT_FALSE(events[i].empty());
    EXPECT_TRUE(events[i].back().finished);
    EXPECT_EQ(events[i].back().token_ids, final_tokens);
    for (size_t k = 0; k + 1 < events[i].size(); ++k) {
      EXPECT_FALSE(events[i][k].finished);
      ASSERT_EQ(events[i][k].token_ids.size(), k + 1);
      EXPECT_TRUE(std::equal(events[i][k].token_ids.begin(), events[i][k].token_ids.end(),
                             final_tokens.begin()));
    }
  }
  EXPECT_GT(outcome.timings.generated_tokens, 0);
  EXPECT_EQ(outcome.timings.source_tokens, 7);
}

TEST(SchedulerBehaviourTest, CacheBoundSplitsBatches) {
  RecordingObserver observer;
  auto engine = CreateEngine({&observer}, TinyLoader());
  ModelSpec spec = TinySpec("tiny");
  // Per position and row: 2 decoder layers x keys+values x 32 floats
  // (layer 2 has attention_dim 32) = 512 bytes. Two rows of 10 source + 20
  // target positions fit in 30 KB, three do not.
  spec.scheduler.max_cache_bytes = 2 * (10 + 20) * 512;
  spec.scheduler.max_batch_wait = absl::Milliseconds(50);
  ASSERT_TRUE(engine->LoadModel(spec).ok());
  std::vector<std::vector<int>> sources(6, std::vector<int>(10, 9));
  for (auto& source : sources) source.back() = 3;
  RequestOutcome outcome = engine->TranslateSync("tiny", IdsRequest(sources, Greedy(20)));
  ASSERT_TRUE(outcome.results.ok()) << outcome.results.status();
  ExpectSameResults(Reference(sources, Greedy(20)), *outcome.results);
  EXPECT_EQ(observer.max_rows(), 2);
}

TEST(SchedulerBehaviourTest, BadRequestsAreRefusedWithClearErrors) {
  RecordingObserver observer;
  auto engine = CreateEngine({&observer}, TinyLoader());
  ASSERT_TRUE(engine->LoadModel(TinySpec("tiny")).ok());
  auto code = [&](const std::string& model, TranslationRequest request) {
    return engine->TranslateSync(model, std::move(request)).results.status().code();
  };
  EXPECT_EQ(code("nope", IdsRequest({{5, 3}}, Greedy())), absl::StatusCode::kNotFound);
  EXPECT_EQ(code("tiny", IdsRequest({{5, 99, 3}}, Greedy())), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("tiny", IdsRequest({std::vector<int>(65, 5)}, Greedy())),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(code("tiny", IdsRequest({}, Greedy())), absl::StatusCode::kInvalidArgument);
  TranslationOptions bad = Greedy();
  bad.num_hypotheses = 2;
  EXPECT_EQ(code("tiny", IdsRequest({{5, 3}}, bad)), absl::StatusCode::kInvalidArgument);
  TranslationRequest text;
  text.sentences = {"Hallo"};
  EXPECT_EQ(code("tiny", text), absl::StatusCode::kInvalidArgument) << "no tokenizer";
  EXPECT_EQ(observer.done(absl::StatusCode::kInvalidArgument), 5);
  EXPECT_EQ(observer.done(absl::StatusCode::kNotFound), 1);

  // An empty source translates to an empty hypothesis without the model.
  RequestOutcome empty = engine->TranslateSync("tiny", IdsRequest({{}, {5, 3}}, Greedy()));
  ASSERT_TRUE(empty.results.ok());
  EXPECT_TRUE((*empty.results)[0].hypotheses[0].token_ids.empty());

  ModelSpec spec = TinySpec("other");
  spec.replicas = -1;
  EXPECT_EQ(engine->LoadModel(spec).code(), absl::StatusCode::kInvalidArgument);
  spec = TinySpec("other");
  spec.scheduler.max_batch_tokens = 0;
  EXPECT_EQ(engine->LoadModel(spec).code(), absl::StatusCode::kInvalidArgument);
}

TEST(SchedulerBehaviourTest, FailedLoadLeavesTheOldVersionServing) {
  auto engine = CreateEngine({}, TinyLoader());
  ASSERT_TRUE(engine->LoadModel(TinySpec("tiny")).ok());
  ModelSpec broken = TinySpec("tiny");
  broken.model_dir = "fail";
  EXPECT_EQ(engine->LoadModel(broken).code(), absl::StatusCode::kDataLoss);
  auto status = engine->GetModel("tiny");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->state, ModelState::kReady);
  EXPECT_NE(status->last_error.find("corrupt"), std::string::npos);
  EXPECT_GT(status->weights_bytes, 0);
  EXPECT_EQ(status->info.quantization, "none");
  EXPECT_TRUE(engine->TranslateSync("tiny", IdsRequest({{5, 3}}, Greedy())).results.ok());

  broken.name = "new";
  EXPECT_FALSE(engine->LoadModel(broken).ok());
  EXPECT_EQ(engine->GetModel("new")->state, ModelState::kFailed);
  EXPECT_EQ(engine->TranslateSync("new", IdsRequest({{5, 3}}, Greedy())).results.status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(engine->ListModels().size(), 2u);
  EXPECT_TRUE(engine->UnloadModel("new").ok());
  EXPECT_EQ(engine->UnloadModel("new").code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace quantmt
