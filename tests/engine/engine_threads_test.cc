// Replicas x intra-op threads: the automatic plan for small and large
// machines, and explicit settings kept as given.
#include <gtest/gtest.h>

#include "serving/cpu_threads.h"

namespace quantmt {
namespace {

TEST(EngineThreadsTest, AutomaticPlanUsesEveryCoreWithFewThreadsPerReplica) {
  EXPECT_EQ(PlanCpuThreads(2, 0, 0).replicas, 2);
  EXPECT_EQ(PlanCpuThreads(2, 0, 0).threads_per_replica, 1);
  EXPECT_EQ(PlanCpuThreads(16, 0, 0).replicas, 16);
  EXPECT_EQ(PlanCpuThreads(16, 0, 0).threads_per_replica, 1);
  EXPECT_EQ(PlanCpuThreads(64, 0, 0).replicas, 64);
  EXPECT_EQ(PlanCpuThreads(64, 0, 0).threads_per_replica, 1);
  EXPECT_EQ(PlanCpuThreads(1, 0, 0).replicas, 1);
  EXPECT_EQ(PlanCpuThreads(0, 0, 0).threads_per_replica, 1) << "unknown core count";
}

TEST(EngineThreadsTest, ExplicitSettingsAreKeptAndTheOtherFillsTheMachine) {
  EXPECT_EQ(PlanCpuThreads(64, 4, 0).threads_per_replica, 16);
  EXPECT_EQ(PlanCpuThreads(64, 0, 8).replicas, 8);
  EXPECT_EQ(PlanCpuThreads(2, 3, 0).threads_per_replica, 1);
  EXPECT_EQ(PlanCpuThreads(2, 2, 2).replicas, 2);
  EXPECT_EQ(PlanCpuThreads(2, 2, 2).threads_per_replica, 2);
}

}  // namespace
}  // namespace quantmt
