// The int8 GEMM kernels against plain integer arithmetic: integer sums are
// exact, so every kernel must give the reference's int32 values bit for bit.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "kernels/int8_gemm.h"
#include "kernels/int8_gemv_vnni.h"

namespace quantmt::kernels {
namespace {

struct Problem {
  int64_t m, n, k;
  std::vector<int8_t> a, w;
  std::vector<int32_t> expected;
};

Problem MakeProblem(int64_t m, int64_t n, int64_t k) {
  std::mt19937 random(static_cast<unsigned>(m * 1000003 + n * 1009 + k));
  std::uniform_int_distribution<int> value(-127, 127);
  Problem p{
      m, n, k, std::vector<int8_t>(m * k), std::vector<int8_t>(n * k), std::vector<int32_t>(m * n)};
  for (auto& x : p.a) x = static_cast<int8_t>(value(random));
  for (auto& x : p.w) x = static_cast<int8_t>(value(random));
  // Extremes too: +-127 everywhere in the first row and column.
  for (int64_t i = 0; i < k; ++i) p.a[i] = p.w[i] = (i % 2 ? 127 : -127);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t c = 0; c < n; ++c) {
      int32_t sum = 0;
      for (int64_t i = 0; i < k; ++i) sum += p.a[r * k + i] * p.w[c * k + i];
      p.expected[r * n + c] = sum;
    }
  }
  return p;
}

// Shapes with ragged edges: n not a multiple of 16 columns or of 4 blocks,
// k not a multiple of 4.
const std::vector<std::pair<int64_t, int64_t>> kShapes = {
    {37, 13}, {200, 130}, {512, 512}, {64, 2048}};

TEST(Int8GemvVnniTest, EqualsIntegerReference) {
  if (!HaveAvx512Vnni()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
  for (auto [n, k] : kShapes) {
    for (int64_t m : {1, 2, 3, 4, 5, 8, 9}) {
      Problem p = MakeProblem(m, n, k);
      Int8GemvVnni gemv(p.w.data(), n, k);
      for (int threads : {1, 2}) {
        std::vector<int32_t> c(m * n, -1);
        gemv.Run(p.a.data(), m, c.data(), threads);
        EXPECT_EQ(c, p.expected) << "m " << m << " n " << n << " k " << k << " threads " << threads;
      }
    }
  }
}

TEST(Int8GemmTest, EveryKernelChoiceEqualsIntegerReference) {
  for (int64_t vnni_rows : {0, 4, 1000}) {
    Int8Gemm::SetVnniMaxRows(vnni_rows);
    for (auto [n, k] : kShapes) {
      auto gemm = [&, n = n, k = k](const Problem& p) {
        auto created = Int8Gemm::Create(p.w.data(), n, k);
        EXPECT_TRUE(created.ok()) << created.status();
        std::vector<int32_t> c(p.m * n, -1);
        if (created.ok()) (*created)->Run(p.a.data(), p.m, c.data(), 2);
        return c;
      };
      for (int64_t m : {1, 4, 5, 64}) {
        if (!HaveDnnl() && !HaveAvx512Vnni()) GTEST_SKIP() << "no int8 kernel in this build";
        Problem p = MakeProblem(m, n, k);
        EXPECT_EQ(gemm(p), p.expected) << "m " << m << " n " << n << " vnni rows " << vnni_rows;
      }
    }
  }
  Int8Gemm::SetVnniMaxRows(Int8Gemm::kDefaultVnniMaxRows);
}

TEST(Int8GemmTest, RefusesEmptyWeights) {
  int8_t w = 1;
  EXPECT_FALSE(Int8Gemm::Create(&w, 0, 4).ok());
  EXPECT_FALSE(Int8Gemm::Create(&w, 4, 0).ok());
}

}  // namespace
}  // namespace quantmt::kernels
