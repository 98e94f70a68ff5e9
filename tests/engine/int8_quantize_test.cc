// INT8 building blocks: weight and activation quantization round trips, and
// the CPU kernels against plain integer arithmetic.
#include "model/int8_quantize.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <thread>
#include <vector>

#include "kernels/dnnl_matmul.h"
#include "kernels/int8_rows.h"

namespace quantmt {
namespace {

TEST(QuantizeRowsTest, RoundTripIsWithinHalfAStepPerRow) {
  torch::manual_seed(1);
  auto weight = torch::randn({64, 96}) * torch::rand({64, 1}) * 3;
  QuantizedRows q = QuantizeRows(weight);
  ASSERT_EQ(q.codes.scalar_type(), torch::kInt8);
  ASSERT_EQ(q.scales.sizes(), torch::IntArrayRef({64}));
  EXPECT_LE(q.codes.abs().max().item<int>(), 127);
  // The largest magnitude of each row maps to +-127 exactly.
  EXPECT_TRUE(q.codes.abs().amax(1).eq(127).all().item<bool>());
  auto error = (DequantizeRows(q.codes, q.scales) - weight).abs();
  // Rounding error is at most half a step (scale / 2), plus float slack.
  EXPECT_TRUE((error <= q.scales.unsqueeze(1) * 0.5f * (1 + 1e-5f)).all().item<bool>());
}

TEST(QuantizeRowsTest, ZeroRowGetsAPositiveScaleAndZeroCodes) {
  auto weight = torch::zeros({2, 8});
  weight[1] = torch::arange(8).to(torch::kFloat32) - 3;
  QuantizedRows q = QuantizeRows(weight);
  EXPECT_EQ(q.scales[0].item<float>(), 1.0f);
  EXPECT_TRUE(q.codes[0].eq(0).all().item<bool>());
  EXPECT_FLOAT_EQ(q.scales[1].item<float>(), 4.0f / 127);
}

TEST(FakeQuantizeActivationsTest, DynamicRowsAreWithinHalfAStep) {
  torch::manual_seed(2);
  auto x = torch::randn({5, 7, 33});
  auto scale = x.abs().amax(-1, true) / 127;
  auto error = (FakeQuantizeActivations(x, torch::Tensor()) - x).abs();
  EXPECT_TRUE((error <= scale * 0.5f * (1 + 1e-5f)).all().item<bool>());
}

TEST(FakeQuantizeActivationsTest, StaticScaleClampsOutliers) {
  auto x = torch::tensor({0.1f, -0.26f, 7.0f, -9.0f});  // 127 * 0.05 = 6.35
  auto y = FakeQuantizeActivations(x, torch::tensor(0.05f));
  EXPECT_TRUE(torch::allclose(y, torch::tensor({0.1f, -0.25f, 127 * 0.05f, -127 * 0.05f})));
}

TEST(Int8RowsKernelTest, MatchesTheTorchQuantizerCodeForCode) {
  torch::manual_seed(3);
  auto x = torch::randn({9, 130});
  x[4].zero_();
  auto codes = torch::empty({9, 130}, torch::kInt8);
  auto scales = torch::empty({9});
  kernels::QuantizeRowsSymmetric(x.data_ptr<float>(), 9, 130, codes.data_ptr<int8_t>(),
                                 scales.data_ptr<float>());
  auto expected_scales = x.abs().amax(1) / 127;
  EXPECT_TRUE(torch::equal(scales, expected_scales));
  auto inverse = torch::where(expected_scales > 0, expected_scales.reciprocal(),
                              torch::zeros_like(expected_scales));
  auto expected = torch::round(x * inverse.unsqueeze(1)).clamp(-127, 127).to(torch::kInt8);
  EXPECT_TRUE(torch::equal(codes, expected));

  auto static_codes = torch::empty({9, 130}, torch::kInt8);
  kernels::QuantizeWithScale(x.data_ptr<float>(), x.numel(), 0.01f,
                             static_codes.data_ptr<int8_t>());
  EXPECT_TRUE(torch::equal(static_codes,
                           torch::round(x * (1.0f / 0.01f)).clamp(-127, 127).to(torch::kInt8)));
}

TEST(Int8RowsKernelTest, DequantizesAccumulatorsWithBothScalesAndBias) {
  auto accumulators = torch::tensor({{10, -20, 30}, {1, 2, 3}}, torch::kInt32);
  auto rows = torch::tensor({0.5f, 2.0f});
  auto columns = torch::tensor({1.0f, 0.25f, 2.0f});
  auto bias = torch::tensor({1.0f, 0.0f, -1.0f});
  auto out = torch::empty({2, 3});
  kernels::DequantizeAccumulators(accumulators.data_ptr<int32_t>(), 2, 3, rows.data_ptr<float>(), 0,
                                  columns.data_ptr<float>(), bias.data_ptr<float>(),
                                  out.data_ptr<float>());
  EXPECT_TRUE(torch::allclose(out, torch::tensor({{6.0f, -2.5f, 29.0f}, {3.0f, 1.0f, 11.0f}})));
}

class DnnlMatmulTest : public ::testing::TestWithParam<int64_t> {
 protected:
  void SetUp() override {
    if (!kernels::HaveDnnl()) GTEST_SKIP() << "built without oneDNN";
  }
};

// Integer accumulation is exact: oneDNN must give the very same int32 sums
// as 64-bit integer arithmetic, for any row count (each m has its own
// primitive over one packed weight layout).
TEST_P(DnnlMatmulTest, Int8EqualsIntegerReference) {
  const int64_t m = GetParam(), n = 72, k = 200;
  torch::manual_seed(m);
  auto a = torch::randint(-127, 128, {m, k}).to(torch::kInt8);
  auto w = torch::randint(-127, 128, {n, k}).to(torch::kInt8);
  auto matmul = kernels::DnnlMatmul::Create(kernels::DnnlMatmul::Kind::kInt8, w.data_ptr<int8_t>(),
                                            nullptr, n, k);
  ASSERT_TRUE(matmul.ok()) << matmul.status();
  auto c = torch::empty({m, n}, torch::kInt32);
  (*matmul)->Run(a.data_ptr<int8_t>(), m, c.data_ptr<int32_t>(), 2);
  auto expected = (a.to(torch::kLong).unsqueeze(1) * w.to(torch::kLong).unsqueeze(0)).sum(-1);
  EXPECT_TRUE(torch::equal(c.to(torch::kLong), expected));
}

TEST_P(DnnlMatmulTest, Float32MatchesLinear) {
  const int64_t m = GetParam(), n = 72, k = 200;
  torch::manual_seed(m);
  auto a = torch::randn({m, k});
  auto w = torch::randn({n, k});
  auto bias = torch::randn({n});
  auto matmul = kernels::DnnlMatmul::Create(kernels::DnnlMatmul::Kind::kFloat32,
                                            w.data_ptr<float>(), bias.data_ptr<float>(), n, k);
  ASSERT_TRUE(matmul.ok()) << matmul.status();
  auto c = torch::empty({m, n});
  (*matmul)->Run(a.data_ptr<float>(), m, c.data_ptr<float>(), 2);
  EXPECT_TRUE(torch::allclose(c, torch::linear(a, w, bias), 1e-4, 1e-4));
}

INSTANTIATE_TEST_SUITE_P(RowCounts, DnnlMatmulTest, ::testing::Values(1, 3, 8, 64, 65, 300));

// Replicas share one layer and call it at once, each on its own intra-op
// thread: every call must get its own input's product. (With oneDNN's
// library-owned scratchpad, concurrent calls overwrote each other's
// partial sums.)
TEST(DnnlMatmulConcurrencyTest, ConcurrentCallersEachGetTheirOwnProduct) {
  if (!kernels::HaveDnnl()) GTEST_SKIP() << "built without oneDNN";
  constexpr int kCallers = 4, kCallsEach = 20;
  for (auto [n, k] : {std::pair<int64_t, int64_t>{2048, 512}, {512, 2048}}) {
    const int64_t m = 64;
    torch::manual_seed(n + k);
    auto w = torch::randn({n, k});
    auto matmul = kernels::DnnlMatmul::Create(kernels::DnnlMatmul::Kind::kFloat32,
                                              w.data_ptr<float>(), nullptr, n, k);
    ASSERT_TRUE(matmul.ok()) << matmul.status();
    std::vector<torch::Tensor> inputs, expected;
    for (int i = 0; i < kCallers; ++i) {
      inputs.push_back(torch::randn({m, k}));
      expected.push_back(torch::empty({m, n}));
      (*matmul)->Run(inputs[i].data_ptr<float>(), m, expected[i].data_ptr<float>(), 1);
    }
    std::vector<int> wrong(kCallers, 0);
    std::vector<std::thread> callers;
    for (int i = 0; i < kCallers; ++i) {
      callers.emplace_back([&, i] {
        auto out = torch::empty({m, n});
        for (int call = 0; call < kCallsEach; ++call) {
          (*matmul)->Run(inputs[i].data_ptr<float>(), m, out.data_ptr<float>(), 1);
          if (!torch::equal(out, expected[i])) ++wrong[i];
        }
      });
    }
    for (auto& caller : callers) caller.join();
    for (int i = 0; i < kCallers; ++i) {
      EXPECT_EQ(wrong[i], 0) << "caller " << i << " of " << n << "x" << k;
    }
  }
}

TEST(DnnlMatmulCreateTest, RefusesEmptyWeightsAndInt8Bias) {
  if (!kernels::HaveDnnl()) GTEST_SKIP() << "built without oneDNN";
  int8_t w = 1;
  float bias = 0;
  EXPECT_FALSE(
      kernels::DnnlMatmul::Create(kernels::DnnlMatmul::Kind::kInt8, &w, nullptr, 0, 1).ok());
  EXPECT_FALSE(kernels::DnnlMatmul::Create(kernels::DnnlMatmul::Kind::kInt8, &w, &bias, 1, 1).ok());
}

}  // namespace
}  // namespace quantmt
