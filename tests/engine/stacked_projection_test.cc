// Serving stacks the projections that share an input (q/k/v of
// self-attention, k/v of cross-attention) into one layer. The results must
// be those of the separate layers: exactly for int8 (each row is quantized
// with the same scale either way, and integer sums do not depend on order),
// within float rounding for float32.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <limits>

#include "model/attention.h"
#include "model/int8_linear.h"
#include "model/linear.h"

namespace quantmt {
namespace {

constexpr int64_t kModel = 64, kHeads = 4;

LinearFactory FloatFactory() {
  return [](const LinearSpec& spec) -> std::shared_ptr<Linear> {
    return std::make_shared<FloatLinear>(spec.in_features, spec.out_features, spec.bias);
  };
}

LinearFactory Int8Factory(Int8Mode mode) {
  return [mode](const LinearSpec& spec) -> std::shared_ptr<Linear> {
    auto layer = std::make_shared<Int8Linear>(spec.in_features, spec.out_features, spec.bias, mode);
    layer->SetFromFloat(torch::randn({spec.out_features, spec.in_features}) * 0.1,
                        torch::randn({spec.out_features}) * 0.1);
    if (mode == Int8Mode::kStatic) layer->SetInputScale(0.05f);
    return layer;
  };
}

// Prepares each projection on its own: what serving did before stacking.
void PrepareSeparately(MultiHeadAttention& attention) {
  for (const auto& module : attention.modules(/*include_self=*/false)) {
    if (auto* linear = dynamic_cast<Linear*>(module.get())) linear->PrepareForInference();
  }
}

struct Outputs {
  torch::Tensor full, step, cross;
};

// One of each kind of call: full self-attention (the encoder's), one
// decoding step against a cache, and cross-attention over a memory.
Outputs Run(MultiHeadAttention& self, MultiHeadAttention& cross) {
  torch::manual_seed(11);
  auto x = torch::randn({3, 5, kModel});
  auto memory = torch::randn({3, 7, kModel});
  auto mask = torch::zeros({3, 1, 1, 5});
  mask[1][0][0][4] = -std::numeric_limits<float>::infinity();
  Outputs out;
  out.full = self.Forward(x, x, mask, 0.0);
  KeyValueCache cache;
  StepPositions step;
  step.uniform = 0;
  step.length = 1;
  out.step = self.ForwardIncremental(x.narrow(1, 0, 1), &cache, step);
  out.cross = cross.ForwardCached(x, cross.ProjectKeyValue(memory), torch::Tensor());
  return out;
}

struct Pair {
  std::shared_ptr<MultiHeadAttention> self, cross;
};

Pair Make(const LinearFactory& factory) {
  torch::manual_seed(5);
  Pair pair;
  pair.self = std::make_shared<MultiHeadAttention>(kModel, kModel, kHeads, factory);
  pair.cross =
      std::make_shared<MultiHeadAttention>(kModel, kModel, kHeads, factory, AttentionKind::kCross);
  pair.self->eval();
  pair.cross->eval();
  return pair;
}

void ExpectStackedEqualsSeparate(const LinearFactory& factory, bool exact) {
  torch::NoGradGuard no_grad;
  Pair pair = Make(factory);
  PrepareSeparately(*pair.self);
  PrepareSeparately(*pair.cross);
  ASSERT_FALSE(pair.self->stacked());
  const Outputs separate = Run(*pair.self, *pair.cross);

  PrepareForInference(*pair.self);
  PrepareForInference(*pair.cross);
  ASSERT_TRUE(pair.self->stacked());
  ASSERT_TRUE(pair.cross->stacked());
  const Outputs stacked = Run(*pair.self, *pair.cross);
  for (auto [a, b] :
       {std::pair{separate.full, stacked.full}, std::pair{separate.step, stacked.step},
        std::pair{separate.cross, stacked.cross}}) {
    if (exact) {
      EXPECT_TRUE(torch::equal(a, b)) << (a - b).abs().max().item<float>();
    } else {
      EXPECT_TRUE(torch::allclose(a, b, 1e-5, 1e-5)) << (a - b).abs().max().item<float>();
    }
  }
}

TEST(StackedProjectionTest, DynamicInt8EqualsSeparateLayersExactly) {
  ExpectStackedEqualsSeparate(Int8Factory(Int8Mode::kDynamic), /*exact=*/true);
}

TEST(StackedProjectionTest, Float32EqualsSeparateLayers) {
  ExpectStackedEqualsSeparate(FloatFactory(), /*exact=*/false);
}

TEST(StackedProjectionTest, StaticInt8StacksOnlyWithOneInputScale) {
  ExpectStackedEqualsSeparate(Int8Factory(Int8Mode::kStatic), /*exact=*/true);

  // Different observed ranges: one scale for all would change the results.
  torch::NoGradGuard no_grad;
  Pair differ = Make(Int8Factory(Int8Mode::kStatic));
  float scale = 0.01f;
  for (const auto& module : differ.self->modules(false)) {
    if (auto* layer = dynamic_cast<Int8Linear*>(module.get())) layer->SetInputScale(scale *= 2);
  }
  PrepareForInference(*differ.self);
  EXPECT_FALSE(differ.self->stacked());
}

TEST(StackedProjectionTest, TrainingUsesTheSeparateLayers) {
  Pair pair = Make(FloatFactory());
  PrepareForInference(*pair.self);
  ASSERT_TRUE(pair.self->stacked());
  pair.self->train();
  auto x = torch::randn({2, 3, kModel});
  auto loss = pair.self->Forward(x, x, torch::Tensor(), 0.0).sum();
  loss.backward();
  for (const auto& parameter : pair.self->parameters()) {
    ASSERT_TRUE(parameter.grad().defined());
  }
}

}  // namespace
}  // namespace quantmt
