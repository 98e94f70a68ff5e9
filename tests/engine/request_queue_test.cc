// Admission across replicas: idle replicas split a large request evenly, a
// replica with a running batch leaves new work to an idle one, and a lone
// replica still takes everything that fits.
#include "serving/request_queue.h"

#include <gtest/gtest.h>

#include <future>
#include <thread>

namespace quantmt {
namespace {

// Greedy sentences: one row each.
std::shared_ptr<RequestState> MakeRequest(int sentences) {
  std::vector<std::vector<int>> sources(sentences, std::vector<int>{5, 6, 3});
  TranslationRequest request;
  request.options.beam_size = 1;
  return std::make_shared<RequestState>(
      "m", std::move(request), std::move(sources), [](RequestOutcome) {}, nullptr);
}

SchedulerOptions Options(absl::Duration max_batch_wait) {
  SchedulerOptions options;
  options.max_batch_wait = max_batch_wait;
  return options;
}

// Starts `count` replicas blocked in Take and returns once all of them wait.
std::vector<std::future<TakeResult>> IdleTakers(RequestQueue& queue, int count) {
  std::vector<std::future<TakeResult>> takers;
  for (int i = 0; i < count; ++i) {
    takers.push_back(std::async(std::launch::async, [&queue] { return queue.Take({}, true); }));
  }
  while (queue.idle_takers() < count) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return takers;
}

std::vector<size_t> SortedShares(std::vector<std::future<TakeResult>>& takers) {
  std::vector<size_t> shares;
  for (auto& taker : takers) shares.push_back(taker.get().admitted.size());
  std::sort(shares.begin(), shares.end());
  return shares;
}

TEST(RequestQueueTest, IdleReplicasSplitALargeRequestEvenly) {
  for (absl::Duration wait : {absl::ZeroDuration(), absl::Milliseconds(20)}) {
    RequestQueue queue(Options(wait), BatchBudget{});
    auto takers = IdleTakers(queue, 2);
    ASSERT_TRUE(queue.Submit(MakeRequest(10), 30).ok());
    EXPECT_EQ(SortedShares(takers), (std::vector<size_t>{5, 5})) << "max_batch_wait " << wait;
    EXPECT_EQ(queue.queued_sentences(), 0);
  }
  RequestQueue queue(Options(absl::ZeroDuration()), BatchBudget{});
  auto takers = IdleTakers(queue, 3);
  ASSERT_TRUE(queue.Submit(MakeRequest(7), 30).ok());
  EXPECT_EQ(SortedShares(takers), (std::vector<size_t>{2, 2, 3}));
}

TEST(RequestQueueTest, ABusyReplicaLeavesNewWorkToAnIdleOne) {
  RequestQueue queue(Options(absl::Seconds(5)), BatchBudget{});
  auto idle = IdleTakers(queue, 1);
  ASSERT_TRUE(queue.Submit(MakeRequest(3), 30).ok());
  const BatchShape running{4, 3, 30};
  EXPECT_TRUE(queue.Take(running, /*block=*/false).admitted.empty());
  queue.Close();  // ends the idle replica's wait for a fuller batch
  EXPECT_EQ(idle[0].get().admitted.size(), 3u);
  // With no idle replica, the running batch takes new work between steps.
  RequestQueue alone(Options(absl::ZeroDuration()), BatchBudget{});
  ASSERT_TRUE(alone.Submit(MakeRequest(3), 30).ok());
  EXPECT_EQ(alone.Take(running, /*block=*/false).admitted.size(), 3u);
}

TEST(RequestQueueTest, ALoneReplicaTakesWhatFitsTheBudget) {
  BatchBudget budget;
  budget.max_rows = 4;
  RequestQueue queue(Options(absl::ZeroDuration()), budget);
  ASSERT_TRUE(queue.Submit(MakeRequest(10), 30).ok());
  EXPECT_EQ(queue.Take({}, /*block=*/true).admitted.size(), 4u);
  EXPECT_EQ(queue.queued_sentences(), 6);
}

}  // namespace
}  // namespace quantmt
