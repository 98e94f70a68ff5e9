#include "client/load/latency_stats.h"

#include <gtest/gtest.h>

#include "client/load/load_options.h"
#include "quantmt/eval/percentile.h"

namespace quantmt::client {
namespace {

TEST(LatencyStatsTest, NearestRankPercentiles) {
  std::vector<double> values;
  for (int i = 1; i <= 1000; ++i) values.push_back(i);
  EXPECT_EQ(eval::Percentile(values, 0.5), 500);
  EXPECT_EQ(eval::Percentile(values, 0.9), 900);
  EXPECT_EQ(eval::Percentile(values, 0.99), 990);
  EXPECT_EQ(eval::Percentile(values, 0.999), 999);
  EXPECT_EQ(eval::Percentile(values, 1.0), 1000);
  EXPECT_EQ(eval::Percentile(values, 0.0), 1);
  EXPECT_EQ(eval::Percentile({}, 0.5), 0);
  EXPECT_EQ(eval::Percentile({7}, 0.99), 7);
  EXPECT_EQ(eval::PercentileOfUnsorted({3, 1, 2, 4}, 0.5), 2);
}

TEST(LatencyStatsTest, HistogramCountsEverySample) {
  const std::vector<double> values = {1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  const auto histogram = LatencyHistogram(values, 3);
  ASSERT_EQ(histogram.size(), 3u);
  EXPECT_EQ(histogram[0].upper, 4);
  EXPECT_EQ(histogram[0].count, 5);  // 1 1 2 3 4
  EXPECT_EQ(histogram[1].count, 3);  // 5 6 7
  EXPECT_EQ(histogram[2].count, 3);  // 8 9 10
  EXPECT_EQ(histogram[2].upper, 10);
  EXPECT_EQ(LatencyHistogram({2, 2}, 5).size(), 1u);
  EXPECT_TRUE(LatencyHistogram({}, 5).empty());
}

TEST(LoadScheduleTest, StepAndRampLevels) {
  LoadOptions options;
  options.schedule = Schedule::kStep;
  options.start_level = 2;
  options.end_level = 8;
  options.step = 3;
  options.step_duration = absl::Seconds(5);
  EXPECT_EQ(LevelAt(options, absl::Seconds(0)), 2);
  EXPECT_EQ(LevelAt(options, absl::Seconds(5)), 5);
  EXPECT_EQ(LevelAt(options, absl::Seconds(12)), 8);
  EXPECT_EQ(LevelAt(options, absl::Seconds(100)), 8);  // capped at the end level
  options.schedule = Schedule::kRamp;
  options.duration = absl::Seconds(10);
  EXPECT_EQ(LevelAt(options, absl::Seconds(5)), 5);
  EXPECT_EQ(LevelAt(options, absl::Seconds(20)), 8);
  options.schedule = Schedule::kConstant;
  EXPECT_EQ(LevelAt(options, absl::Seconds(20)), 2);
}

}  // namespace
}  // namespace quantmt::client
