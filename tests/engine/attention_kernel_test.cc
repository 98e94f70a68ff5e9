// The fused CPU attention kernel against LibTorch's softmax(QK^T / sqrt(d) +
// mask) V on the layouts the model hands it: heads split out of [B, T, H*D]
// (strided), cache views narrowed in time, broadcast masks.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cmath>
#include <limits>

#include "kernels/attention_cpu.h"
#include "model/attention.h"
#include "model/linear.h"

namespace quantmt {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

kernels::HeadsView HeadsOf(const torch::Tensor& x) {
  return {x.data_ptr<float>(), x.stride(0), x.stride(1), x.stride(2)};
}

// [B, T, H*D] -> [B, H, T, D] as a strided view, as the model splits heads.
torch::Tensor SplitHeads(const torch::Tensor& x, int64_t heads) {
  return x.view({x.size(0), x.size(1), heads, -1}).transpose(1, 2);
}

torch::Tensor Reference(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask) {
  auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(static_cast<double>(q.size(3)));
  if (mask.defined()) scores = scores + mask;
  auto context = torch::matmul(torch::softmax(scores, -1), v);  // [B, H, Tq, D]
  return context.transpose(1, 2).reshape({q.size(0), q.size(2), -1});
}

torch::Tensor RunKernel(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask, int threads) {
  const kernels::AttentionShape shape{q.size(0), q.size(1), q.size(2), k.size(2), q.size(3)};
  kernels::MaskView mask_view;
  torch::Tensor expanded;
  if (mask.defined()) {
    expanded = mask.expand({shape.batch, 1, shape.queries, shape.keys});
    mask_view = {expanded.data_ptr<float>(), expanded.stride(0), expanded.stride(2),
                 expanded.stride(3)};
  }
  auto out = torch::empty({shape.batch, shape.queries, shape.heads * shape.head_dim});
  kernels::AttentionForward(HeadsOf(q), HeadsOf(k), HeadsOf(v), mask_view, shape,
                            1.0f / std::sqrt(static_cast<float>(shape.head_dim)),
                            out.data_ptr<float>(), threads);
  return out;
}

class AttentionKernelTest : public ::testing::TestWithParam<int> {};

TEST_P(AttentionKernelTest, MatchesLibTorchOnSplitHeadsWithPaddingMask) {
  torch::manual_seed(1);
  const int64_t batch = 3, heads = 4, length = 7, head_dim = 16;
  auto q = SplitHeads(torch::randn({batch, length, heads * head_dim}), heads);
  auto k = SplitHeads(torch::randn({batch, length, heads * head_dim}), heads);
  auto v = SplitHeads(torch::randn({batch, length, heads * head_dim}), heads);
  // Sentence 1 has two padding positions, sentence 2 one: [B, 1, 1, T].
  auto mask = torch::zeros({batch, 1, 1, length});
  mask[1][0][0].narrow(0, 5, 2).fill_(kNegInf);
  mask[2][0][0][6] = kNegInf;
  auto expected = Reference(q, k, v, mask);
  auto actual = RunKernel(q, k, v, mask, GetParam());
  EXPECT_TRUE(torch::allclose(actual, expected, 1e-5, 1e-5))
      << (actual - expected).abs().max().item<float>();
}

TEST_P(AttentionKernelTest, CausalMaskAndNoMask) {
  torch::manual_seed(2);
  const int64_t batch = 2, heads = 2, length = 5, head_dim = 8;
  auto q = torch::randn({batch, heads, length, head_dim});
  auto k = torch::randn({batch, heads, length, head_dim});
  auto v = torch::randn({batch, heads, length, head_dim});
  auto causal = torch::full({length, length}, kNegInf).triu(1);  // [Tq, Tk]
  EXPECT_TRUE(torch::allclose(RunKernel(q, k, v, causal, GetParam()), Reference(q, k, v, causal),
                              1e-5, 1e-5));
  EXPECT_TRUE(torch::allclose(RunKernel(q, k, v, torch::Tensor(), GetParam()),
                              Reference(q, k, v, torch::Tensor()), 1e-5, 1e-5));
}

TEST_P(AttentionKernelTest, OneQueryOverANarrowedCacheIgnoresUnusedSlots) {
  torch::manual_seed(3);
  const int64_t batch = 4, heads = 8, capacity = 16, used = 9, head_dim = 64;
  auto cache_k = torch::randn({batch, heads, capacity, head_dim});
  auto cache_v = torch::randn({batch, heads, capacity, head_dim});
  // Slots past `used` hold garbage (NaN): a narrowed view must never read them.
  cache_k.narrow(2, used, capacity - used).fill_(std::nanf(""));
  cache_v.narrow(2, used, capacity - used).fill_(std::nanf(""));
  auto k = cache_k.narrow(2, 0, used);
  auto v = cache_v.narrow(2, 0, used);
  auto q = SplitHeads(torch::randn({batch, 1, heads * head_dim}), heads);
  // Rows at different positions of a continuous batch: unfilled slots masked.
  auto mask = torch::zeros({batch, 1, 1, used});
  mask[0][0][0].narrow(0, 3, used - 3).fill_(kNegInf);
  mask[3][0][0].narrow(0, 8, 1).fill_(kNegInf);
  // LibTorch's reference needs finite values in masked slots; the kernel
  // must not read them at all, so they hold NaN for the kernel.
  auto expected = Reference(q, k, v, mask);
  cache_k[0].narrow(1, 3, used - 3).fill_(std::nanf(""));
  cache_v[0].narrow(1, 3, used - 3).fill_(std::nanf(""));
  cache_k[3].narrow(1, 8, 1).fill_(std::nanf(""));
  cache_v[3].narrow(1, 8, 1).fill_(std::nanf(""));
  auto actual = RunKernel(q, k, v, mask, GetParam());
  EXPECT_FALSE(actual.isnan().any().item<bool>());
  EXPECT_TRUE(torch::allclose(actual, expected, 1e-5, 1e-5));
}

TEST_P(AttentionKernelTest, HeadSize64IgnoresMaskedSlotsAmongManyKeys) {
  // The head-size-64 kernel over 41 keys and 3 queries, with masks of every
  // kind (most keys, a run of 16, one key, all but the last for one query);
  // masked slots hold NaN.
  torch::manual_seed(4);
  const int64_t batch = 5, heads = 2, queries = 3, used = 41, head_dim = 64;
  auto k = torch::randn({batch, heads, used, head_dim});
  auto v = torch::randn({batch, heads, used, head_dim});
  auto q = torch::randn({batch, heads, queries, head_dim});
  auto mask = torch::zeros({batch, 1, queries, used});
  mask[0].narrow(2, 3, used - 3).fill_(kNegInf);  // all but 3 keys
  mask[1].narrow(2, 16, 16).fill_(kNegInf);       // the second block
  mask[2].narrow(2, 20, 1).fill_(kNegInf);        // one key inside a block
  mask[3][0][1].narrow(0, 0, 40).fill_(kNegInf);  // one query: the last key only
  auto expected = Reference(q, k, v, mask);
  auto masked = mask.eq(kNegInf).all(2, /*keepdim=*/true).transpose(2, 3);  // [B, 1, T, 1]
  k.masked_fill_(masked.expand_as(k), std::nanf(""));
  v.masked_fill_(masked.expand_as(v), std::nanf(""));
  auto actual = RunKernel(q, k, v, mask, GetParam());
  EXPECT_FALSE(actual.isnan().any().item<bool>());
  EXPECT_TRUE(torch::allclose(actual, expected, 1e-5, 1e-5))
      << (actual - expected).abs().max().item<float>();
}

TEST_P(AttentionKernelTest, QueryWithEveryKeyMaskedGetsZeros) {
  const int64_t batch = 2, heads = 2, length = 3, head_dim = 4;
  auto q = torch::randn({batch, heads, 1, head_dim});
  auto k = torch::randn({batch, heads, length, head_dim});
  auto v = torch::randn({batch, heads, length, head_dim});
  auto mask = torch::zeros({batch, 1, 1, length});
  mask[1].fill_(kNegInf);
  auto actual = RunKernel(q, k, v, mask, GetParam());
  EXPECT_TRUE(actual[1].eq(0).all().item<bool>());
  EXPECT_TRUE(torch::allclose(actual[0], Reference(q, k, v, mask)[0], 1e-5, 1e-5));
}

INSTANTIATE_TEST_SUITE_P(Threads, AttentionKernelTest, ::testing::Values(1, 2));

// The module takes the fused path at inference and LibTorch's ops while
// training: both must give the same numbers.
TEST(MultiHeadAttentionTest, FusedInferenceEqualsTrainingPath) {
  torch::manual_seed(4);
  LinearFactory make_linear = [](const LinearSpec& spec) {
    return std::static_pointer_cast<Linear>(
        std::make_shared<FloatLinear>(spec.in_features, spec.out_features, spec.bias));
  };
  MultiHeadAttention attention(32, 32, 4, make_linear);
  auto query = torch::randn({2, 3, 32});
  auto memory = torch::randn({2, 6, 32});
  auto mask = torch::zeros({2, 1, 1, 6});
  mask[0][0][0][5] = kNegInf;
  attention.train();
  auto unfused = attention.Forward(query, memory, mask, 0.0).detach();
  attention.eval();
  torch::NoGradGuard no_grad;
  auto fused = attention.Forward(query, memory, mask, 0.0);
  EXPECT_TRUE(torch::allclose(fused, unfused, 1e-5, 1e-5));
}

}  // namespace
}  // namespace quantmt
