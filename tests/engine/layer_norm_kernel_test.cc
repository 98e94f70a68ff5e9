// The fused residual-add + layer-norm kernel against LibTorch's
// layer_norm(x + residual), on the shapes a decoding step and an encoder
// pass hand it (the model's own parity tests cover its use in the layers).
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "kernels/layer_norm_cpu.h"

namespace quantmt {
namespace {

torch::Tensor RunKernel(const torch::Tensor& x, const torch::Tensor& residual,
                        const torch::Tensor& gamma, const torch::Tensor& beta, float eps,
                        int threads) {
  auto out = torch::empty_like(x);
  const int64_t cols = x.size(-1);
  kernels::AddLayerNorm(x.data_ptr<float>(),
                        residual.defined() ? residual.data_ptr<float>() : nullptr,
                        gamma.defined() ? gamma.data_ptr<float>() : nullptr,
                        beta.defined() ? beta.data_ptr<float>() : nullptr, x.numel() / cols, cols,
                        eps, out.data_ptr<float>(), threads);
  return out;
}

class LayerNormKernelTest : public ::testing::TestWithParam<int> {};

TEST_P(LayerNormKernelTest, MatchesLibTorchWithAndWithoutResidual) {
  torch::manual_seed(4);
  for (int64_t rows : {1, 3, 64, 1920}) {
    auto x = torch::randn({rows, 512});
    auto residual = torch::randn({rows, 512}) * 3;
    auto gamma = torch::rand({512}) + 0.5;
    auto beta = torch::randn({512});
    auto expected = torch::layer_norm(x + residual, {512}, gamma, beta, 1e-5);
    auto actual = RunKernel(x, residual, gamma, beta, 1e-5f, GetParam());
    EXPECT_TRUE(torch::allclose(actual, expected, 1e-5, 1e-5))
        << rows << " rows: " << (actual - expected).abs().max().item<float>();
    EXPECT_TRUE(torch::allclose(RunKernel(x, {}, gamma, beta, 1e-5f, GetParam()),
                                torch::layer_norm(x, {512}, gamma, beta, 1e-5), 1e-5, 1e-5));
  }
}

TEST_P(LayerNormKernelTest, StableForRowsFarFromZeroAndOddWidths) {
  torch::manual_seed(5);
  // A large common offset: sum(x^2) - mean^2 would lose every digit here.
  auto x = torch::randn({5, 37}) + 1000.0;
  auto expected = torch::layer_norm(x, {37}, {}, {}, 1e-6);
  auto actual = RunKernel(x, {}, {}, {}, 1e-6f, GetParam());
  EXPECT_TRUE(torch::allclose(actual, expected, 1e-3, 1e-3))
      << (actual - expected).abs().max().item<float>();
  // A constant row normalizes to beta (zero variance, eps keeps it finite).
  auto constant = torch::full({2, 8}, 7.0f);
  auto beta = torch::arange(8, torch::kFloat);
  EXPECT_TRUE(torch::allclose(RunKernel(constant, {}, torch::ones({8}), beta, 1e-5f, GetParam()),
                              beta.expand({2, 8})));
}

TEST_P(LayerNormKernelTest, OutputMayAliasAnInput) {
  torch::manual_seed(6);
  auto x = torch::randn({64, 512});
  auto residual = torch::randn({64, 512});
  auto gamma = torch::rand({512});
  auto beta = torch::randn({512});
  auto expected = torch::layer_norm(x + residual, {512}, gamma, beta, 1e-5);
  kernels::AddLayerNorm(x.data_ptr<float>(), residual.data_ptr<float>(), gamma.data_ptr<float>(),
                        beta.data_ptr<float>(), 64, 512, 1e-5f, residual.data_ptr<float>(),
                        GetParam());
  EXPECT_TRUE(torch::allclose(residual, expected, 1e-5, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Threads, LayerNormKernelTest, ::testing::Values(1, 2),
                         [](const auto& info) { return std::to_string(info.param) + "_threads"; });

}  // namespace
}  // namespace quantmt
