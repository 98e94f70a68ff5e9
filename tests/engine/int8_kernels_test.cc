// The int8 GEMM kernels against plain integer arithmetic: integer sums are
// exact, so every kernel must give the reference's int32 values bit for bit,
// and the fused float path (quantize, multiply, scale) the same numbers as
// the three separate passes up to one rounding of the final multiply-add.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/int8_gemm.h"
#include "kernels/int8_gemm_vnni.h"
#include "kernels/int8_rows.h"

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

// Row counts around the kernel's tiles (6 rows; 7 to 11 split in two) and
// row blocks (k = 2,048 keeps 90 rows in cache at a time).
const std::vector<int64_t> kRowCounts = {1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 64, 200};

TEST(Int8GemmVnniTest, MultiplyEqualsIntegerReference) {
  if (!HaveAvx512Vnni()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI";
  for (auto [n, k] : kShapes) {
    for (int64_t m : kRowCounts) {
      Problem p = MakeProblem(m, n, k);
      Int8GemmVnni gemm(p.w.data(), n, k);
      for (int threads : {1, 2}) {
        std::vector<int32_t> c(m * n, -1);
        gemm.Multiply(p.a.data(), m, c.data(), threads);
        EXPECT_EQ(c, p.expected) << "m " << m << " n " << n << " k " << k << " threads " << threads;
      }
    }
  }
}

// Float inputs with an all-zero row and an outlier row, per-column scales
// and a bias.
struct FloatProblem {
  int64_t m, n, k;
  std::vector<float> x, column_scales, bias;
  std::vector<int8_t> w;
};

FloatProblem MakeFloatProblem(int64_t m, int64_t n, int64_t k) {
  std::mt19937 random(static_cast<unsigned>(m * 7919 + n * 31 + k));
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> code(-127, 127);
  FloatProblem p{m,
                 n,
                 k,
                 std::vector<float>(m * k),
                 std::vector<float>(n),
                 std::vector<float>(n),
                 std::vector<int8_t>(n * k)};
  for (auto& v : p.x) v = normal(random);
  if (m > 1) std::fill(p.x.begin() + k, p.x.begin() + 2 * k, 0.0f);
  if (m > 2) p.x[2 * k + k / 2] = 1e4f;
  for (auto& v : p.column_scales) v = 0.001f + 0.01f * std::fabs(normal(random));
  for (auto& v : p.bias) v = normal(random);
  for (auto& v : p.w) v = static_cast<int8_t>(code(random));
  return p;
}

// The three separate passes, on the integer reference.
std::vector<float> ReferenceForward(const FloatProblem& p, float input_scale, bool with_bias) {
  std::vector<int8_t> codes(p.m * p.k);
  std::vector<float> row_scales(p.m, input_scale);
  if (input_scale > 0.0f) {
    QuantizeWithScale(p.x.data(), p.m * p.k, input_scale, codes.data());
  } else {
    QuantizeRowsSymmetric(p.x.data(), p.m, p.k, codes.data(), row_scales.data());
  }
  std::vector<int32_t> sums(p.m * p.n);
  for (int64_t r = 0; r < p.m; ++r) {
    for (int64_t c = 0; c < p.n; ++c) {
      int32_t sum = 0;
      for (int64_t i = 0; i < p.k; ++i) sum += codes[r * p.k + i] * p.w[c * p.k + i];
      sums[r * p.n + c] = sum;
    }
  }
  std::vector<float> out(p.m * p.n);
  DequantizeAccumulators(sums.data(), p.m, p.n, row_scales.data(), 0.0f, p.column_scales.data(),
                         with_bias ? p.bias.data() : nullptr, out.data());
  return out;
}

void ExpectClose(const std::vector<float>& actual, const std::vector<float>& expected,
                 const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  int64_t mismatches = 0;
  for (size_t i = 0; i < actual.size(); ++i) {
    // One float rounding of a product of magnitude |expected| (fused or not).
    const float tolerance = 1e-6f * std::max(1.0f, std::fabs(expected[i]));
    if (!(std::fabs(actual[i] - expected[i]) <= tolerance) && ++mismatches <= 3) {
      ADD_FAILURE() << what << ": element " << i << " is " << actual[i] << ", expected "
                    << expected[i];
    }
  }
  EXPECT_EQ(mismatches, 0) << what;
}

TEST(Int8GemmTest, ForwardOnEveryKernelMatchesTheSeparatePasses) {
  if (!HaveDnnl() && !HaveAvx512Vnni()) GTEST_SKIP() << "no int8 kernel in this build";
  for (int64_t vnni_rows : {int64_t{0}, int64_t{4}, Int8Gemm::kDefaultVnniMaxRows}) {
    Int8Gemm::SetVnniMaxRows(vnni_rows);
    for (auto [n, k] : kShapes) {
      for (int64_t m : {1, 3, 8, 13, 64}) {
        FloatProblem p = MakeFloatProblem(m, n, k);
        auto gemm = Int8Gemm::Create(p.w.data(), n, k);
        ASSERT_TRUE(gemm.ok()) << gemm.status();
        for (float input_scale : {0.0f, 0.02f}) {
          for (bool with_bias : {true, false}) {
            Int8Scaling scaling;
            scaling.input_scale = input_scale;
            scaling.column_scales = p.column_scales.data();
            scaling.bias = with_bias ? p.bias.data() : nullptr;
            std::vector<float> out(m * n, -1.0f);
            (*gemm)->Forward(p.x.data(), m, scaling, out.data(), 2);
            ExpectClose(out, ReferenceForward(p, input_scale, with_bias),
                        "m " + std::to_string(m) + " n " + std::to_string(n) + " k " +
                            std::to_string(k) + " input scale " + std::to_string(input_scale) +
                            " bias " + std::to_string(with_bias) + " vnni rows " +
                            std::to_string(vnni_rows));
          }
        }
      }
    }
  }
  Int8Gemm::SetVnniMaxRows(Int8Gemm::kDefaultVnniMaxRows);
}

TEST(Int8GemmTest, EveryKernelChoiceEqualsIntegerReference) {
  for (int64_t vnni_rows : {int64_t{0}, int64_t{4}, Int8Gemm::kDefaultVnniMaxRows}) {
    Int8Gemm::SetVnniMaxRows(vnni_rows);
    for (auto [n, k] : kShapes) {
      auto gemm = [&, n = n, k = k](const Problem& p) {
        auto created = Int8Gemm::Create(p.w.data(), n, k);
        EXPECT_TRUE(created.ok()) << created.status();
        std::vector<int32_t> c(p.m * n, -1);
        if (created.ok()) (*created)->Multiply(p.a.data(), p.m, c.data(), 2);
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
