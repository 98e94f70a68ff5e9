#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "server/metrics/registry.h"

namespace quantmt::server {
namespace {

TEST(MetricsRegistryTest, CounterWithLabelsInTextFormat) {
  Registry registry;
  auto requests = registry.AddCounter("quantmt_requests_total", "Requests.", {"rpc", "code"});
  ASSERT_TRUE(requests.ok());
  (*requests)->Increment({"Translate", "OK"});
  (*requests)->Increment({"Translate", "OK"}, 2);
  (*requests)->Increment({"Translate", "NOT_FOUND"});
  (*requests)->Increment({"Translate", "OK"}, -5);  // ignored: counters only go up
  EXPECT_EQ((*requests)->Value({"Translate", "OK"}), 3);
  EXPECT_EQ(registry.Expose(),
            "# HELP quantmt_requests_total Requests.\n"
            "# TYPE quantmt_requests_total counter\n"
            "quantmt_requests_total{rpc=\"Translate\",code=\"NOT_FOUND\"} 1\n"
            "quantmt_requests_total{rpc=\"Translate\",code=\"OK\"} 3\n");
}

TEST(MetricsRegistryTest, HistogramBucketsAreCumulativeWithInf) {
  Registry registry;
  auto latency = registry.AddHistogram("rpc_seconds", "Latency.", {"model"}, {0.1, 1});
  ASSERT_TRUE(latency.ok());
  for (double value : {0.05, 0.1, 0.5, 3.0}) (*latency)->Observe({"m"}, value);
  EXPECT_EQ(registry.Expose(),
            "# HELP rpc_seconds Latency.\n"
            "# TYPE rpc_seconds histogram\n"
            "rpc_seconds_bucket{model=\"m\",le=\"0.1\"} 2\n"
            "rpc_seconds_bucket{model=\"m\",le=\"1\"} 3\n"
            "rpc_seconds_bucket{model=\"m\",le=\"+Inf\"} 4\n"
            "rpc_seconds_sum{model=\"m\"} 3.65\n"
            "rpc_seconds_count{model=\"m\"} 4\n");
  EXPECT_EQ((*latency)->Count({"m"}), 4u);
}

TEST(MetricsRegistryTest, GaugeWithoutLabelsAndCollectors) {
  Registry registry;
  auto memory = registry.AddGauge("process_resident_memory_bytes", "RSS.", {});
  ASSERT_TRUE(memory.ok());
  int scrapes = 0;
  registry.AddCollector([&] { (*memory)->Set({}, 1000 + ++scrapes); });
  EXPECT_NE(registry.Expose().find("process_resident_memory_bytes 1001\n"), std::string::npos);
  EXPECT_NE(registry.Expose().find("process_resident_memory_bytes 1002\n"), std::string::npos);
}

TEST(MetricsRegistryTest, EscapesLabelValuesAndHelp) {
  Registry registry;
  auto gauge = registry.AddGauge("g", "line one\\two\nthree", {"path"});
  ASSERT_TRUE(gauge.ok());
  (*gauge)->Set({"a\"b\\c\nd"}, 1.5);
  EXPECT_EQ(registry.Expose(),
            "# HELP g line one\\\\two\\nthree\n"
            "# TYPE g gauge\n"
            "g{path=\"a\\\"b\\\\c\\nd\"} 1.5\n");
}

TEST(MetricsRegistryTest, RejectsBadNamesAndDuplicates) {
  Registry registry;
  EXPECT_TRUE(absl::IsInvalidArgument(registry.AddCounter("1bad", "", {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(registry.AddCounter("bad-name", "", {}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(registry.AddCounter("ok", "", {"__reserved"}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(registry.AddCounter("ok", "", {"a:b"}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(registry.AddHistogram("h", "", {"le"}, {1}).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(registry.AddHistogram("h", "", {}, {2, 1}).status()));
  ASSERT_TRUE(registry.AddCounter("ns:ok_total", "", {}).ok());
  EXPECT_TRUE(absl::IsAlreadyExists(registry.AddGauge("ns:ok_total", "", {}).status()));
}

TEST(MetricsRegistryTest, WrongLabelCountIsDroppedNotCrashed) {
  Registry registry;
  auto counter = *registry.AddCounter("c_total", "", {"a", "b"});
  counter->Increment({"only one"});
  EXPECT_EQ(counter->dropped_observations(), 1);
  EXPECT_EQ(registry.Expose(), "");  // a family without series writes nothing
}

TEST(MetricsRegistryTest, ClearRemovesSeries) {
  Registry registry;
  auto gauge = *registry.AddGauge("g", "", {"model"});
  gauge->Set({"a"}, 1);
  gauge->Clear();
  gauge->Set({"b"}, 2);
  EXPECT_EQ(registry.Expose(), "# HELP g \n# TYPE g gauge\ng{model=\"b\"} 2\n");
}

// The server updates metrics from gRPC, replica and scrape threads at once
// (and the ThreadSanitizer run checks this test): no update may be lost.
TEST(MetricsRegistryTest, ConcurrentUpdatesAndScrapesLoseNothing) {
  constexpr int kThreads = 4;
  constexpr int kUpdates = 2000;
  Registry registry;
  auto requests = *registry.AddCounter("requests_total", "", {"model"});
  auto in_flight = *registry.AddGauge("in_flight", "", {"model"});
  auto latency = *registry.AddHistogram("latency_seconds", "", {"model"}, {0.5});
  auto scrapes = *registry.AddGauge("scrapes", "", {});
  int collected = 0;  // the registry runs collectors under its own lock
  registry.AddCollector([&] { scrapes->Set({}, ++collected); });

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, model = "m" + std::to_string(t % 2)] {
      for (int i = 0; i < kUpdates; ++i) {
        in_flight->Add({model}, 1);
        requests->Increment({model});
        latency->Observe({model}, i % 2 == 0 ? 0.25 : 1.0);
        in_flight->Add({model}, -1);
      }
    });
  }
  int scraped = 0;
  for (; scraped < 50; ++scraped) EXPECT_NE(registry.Expose(), "");
  for (std::thread& thread : threads) thread.join();

  for (const char* model : {"m0", "m1"}) {
    EXPECT_EQ(requests->Value({model}), kThreads / 2 * kUpdates) << model;
    EXPECT_EQ(in_flight->Value({model}), 0) << model;
    EXPECT_EQ(latency->Count({model}), uint64_t{kThreads / 2 * kUpdates}) << model;
    EXPECT_DOUBLE_EQ(latency->Sum({model}), kThreads / 2 * kUpdates / 2 * 1.25) << model;
  }
  EXPECT_EQ(scrapes->Value({}), scraped);
}

TEST(MetricsRegistryTest, SampleValues) {
  EXPECT_EQ(FormatSampleValue(0), "0");
  EXPECT_EQ(FormatSampleValue(0.1), "0.1");
  EXPECT_EQ(FormatSampleValue(1e21), "1e+21");
  EXPECT_EQ(FormatSampleValue(INFINITY), "+Inf");
  EXPECT_EQ(FormatSampleValue(-INFINITY), "-Inf");
  EXPECT_EQ(FormatSampleValue(NAN), "NaN");
  EXPECT_EQ(ExponentialBuckets(1, 2, 4), (std::vector<double>{1, 2, 4, 8}));
}

}  // namespace
}  // namespace quantmt::server
