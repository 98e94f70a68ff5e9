#include "model/attention.h"

#include <ATen/record_function.h>
#include <torch/version.h>

#include <algorithm>
#include <cmath>

#include "kernels/attention_cpu.h"

namespace quantmt {

void KeyValueCache::Select(const torch::Tensor& index, int64_t keep_length) {
  if (!keys.defined()) return;
  // Narrow first: index_select then copies only the slots kept.
  if (keep_length >= 0 && keep_length < keys.size(2)) {
    keys = keys.narrow(2, 0, keep_length);
    values = values.narrow(2, 0, keep_length);
    length = std::min(length, keep_length);
  }
  keys = keys.index_select(0, index);
  values = values.index_select(0, index);
}

namespace {

torch::Tensor PadTime(const torch::Tensor& x, int64_t time) {
  if (x.size(2) == time) return x;
  auto padded = torch::zeros({x.size(0), x.size(1), time, x.size(3)}, x.options());
  padded.narrow(2, 0, x.size(2)).copy_(x);
  return padded;
}

}  // namespace

void KeyValueCache::Append(const KeyValueCache& other) {
  if (!other.keys.defined()) return;
  if (!keys.defined()) {
    *this = other;
    return;
  }
  const int64_t time = std::max(keys.size(2), other.keys.size(2));
  keys = torch::cat({PadTime(keys, time), PadTime(other.keys, time)}, 0);
  values = torch::cat({PadTime(values, time), PadTime(other.values, time)}, 0);
  length = std::max(length, other.length);
}

int64_t KeyValueCache::bytes() const {
  if (!keys.defined()) return 0;
  return 2 * keys.numel() * static_cast<int64_t>(keys.element_size());
}

MultiHeadAttention::MultiHeadAttention(int64_t d_model, int64_t attention_dim, int64_t heads,
                                       const LinearFactory& make_linear, AttentionKind kind)
    : heads_(heads), head_dim_(attention_dim / heads), kind_(kind) {
  q_proj_ = register_module("q_proj",
                            make_linear({d_model, attention_dim, true, LinearRole::kAttention}));
  k_proj_ = register_module("k_proj",
                            make_linear({d_model, attention_dim, true, LinearRole::kAttention}));
  v_proj_ = register_module("v_proj",
                            make_linear({d_model, attention_dim, true, LinearRole::kAttention}));
  out_proj_ = register_module("out_proj",
                              make_linear({attention_dim, d_model, true, LinearRole::kAttention}));
}

torch::Tensor MultiHeadAttention::SplitHeads(const torch::Tensor& x) const {
  // view also splits a column range of a wider tensor (the stacked layer's
  // output): only the last axis must be contiguous.
  return x.view({x.size(0), x.size(1), heads_, head_dim_}).transpose(1, 2);
}

void MultiHeadAttention::PrepareForInference() {
  std::vector<std::shared_ptr<Linear>> parts = {k_proj_, v_proj_};
  if (kind_ == AttentionKind::kSelf) parts.insert(parts.begin(), q_proj_);
  stacked_ = StackProjections(parts);
  if (stacked_) {
    for (auto& part : parts) part->ReleaseInferenceState();
  }
}

Linear* MultiHeadAttention::StackedFor(const torch::Tensor& input) const {
  if (!stacked_ || torch::GradMode::is_enabled()) return nullptr;
  return stacked_.get();
}

std::vector<torch::Tensor> MultiHeadAttention::Project(const torch::Tensor& input) {
  std::vector<std::shared_ptr<Linear>> parts = {k_proj_, v_proj_};
  if (kind_ == AttentionKind::kSelf) parts.insert(parts.begin(), q_proj_);
  std::vector<torch::Tensor> projections;
  if (Linear* stacked = StackedFor(input)) {
    auto all = stacked->Forward(input);
    int64_t offset = 0;
    for (const auto& part : parts) {
      projections.push_back(SplitHeads(all.narrow(-1, offset, part->out_features())));
      offset += part->out_features();
    }
  } else {
    for (const auto& part : parts) projections.push_back(SplitHeads(part->Forward(input)));
  }
  return projections;
}

namespace {

// A decoder's self-attention cache starts with room for this many target
// tokens (or the decoding limit, when lower), enough for most sentences:
// each regrowth copies the whole cache into fresh memory, and at batch 64
// the one at 16 tokens took about a tenth of a 30-token decode (op profile).
constexpr int64_t kInitialCacheSlots = 64;

kernels::HeadsView HeadsOf(const torch::Tensor& x) {
  return {x.data_ptr<float>(), x.stride(0), x.stride(1), x.stride(2)};
}

// Inference on the CPU in float32 with the head dimension contiguous and a
// mask that does not vary by head: the fused kernel applies.
bool FusedKernelApplies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                        const torch::Tensor& mask) {
  if (torch::GradMode::is_enabled() || !q.is_cpu()) return false;
  for (const auto* x : {&q, &k, &v}) {
    if (x->scalar_type() != torch::kFloat32 || x->stride(3) != 1) return false;
  }
  return !mask.defined() || (mask.is_cpu() && mask.scalar_type() == torch::kFloat32 &&
                             (mask.dim() < 3 || mask.size(-3) == 1));
}

}  // namespace

torch::Tensor MultiHeadAttention::Attend(const torch::Tensor& q, const torch::Tensor& k,
                                         const torch::Tensor& v, const torch::Tensor& mask,
                                         double dropout) {
  if ((dropout == 0 || !is_training()) && FusedKernelApplies(q, k, v, mask)) {
    RECORD_FUNCTION("quantmt::attention", std::vector<c10::IValue>());
    const kernels::AttentionShape shape{q.size(0), heads_, q.size(2), k.size(2), head_dim_};
    kernels::MaskView mask_view;
    torch::Tensor expanded;
    if (mask.defined()) {
      expanded = mask.expand({shape.batch, 1, shape.queries, shape.keys});
      mask_view = {expanded.data_ptr<float>(), expanded.stride(0), expanded.stride(2),
                   expanded.stride(3)};
    }
    auto context = torch::empty({shape.batch, shape.queries, heads_ * head_dim_}, q.options());
    kernels::AttentionForward(HeadsOf(q), HeadsOf(k), HeadsOf(v), mask_view, shape,
                              static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim_))),
                              context.data_ptr<float>(), at::get_num_threads());
    return out_proj_->Forward(context);
  }
#if TORCH_VERSION_MAJOR >= 2
  if (!q.is_cpu() && !torch::GradMode::is_enabled()) {
    // On a GPU: LibTorch's fused attention kernels (one launch, not four).
    auto context = at::scaled_dot_product_attention(q, k, v, mask);  // [B, H, Tq, D]
    context = context.transpose(1, 2).reshape({q.size(0), q.size(2), heads_ * head_dim_});
    return out_proj_->Forward(context);
  }
#endif
  // q is scaled before the product: the same result, fewer multiplications.
  auto scaled = q * (1.0 / std::sqrt(static_cast<double>(head_dim_)));
  auto scores = torch::matmul(scaled, k.transpose(-2, -1));
  if (mask.defined()) scores = scores + mask;
  auto weights = torch::softmax(scores, -1);
  if (dropout > 0 && is_training()) weights = torch::dropout(weights, dropout, true);
  auto context = torch::matmul(weights, v);  // [B, H, Tq, D]
  context = context.transpose(1, 2).reshape({q.size(0), q.size(2), heads_ * head_dim_});
  return out_proj_->Forward(context);
}

torch::Tensor MultiHeadAttention::Forward(const torch::Tensor& query, const torch::Tensor& memory,
                                          const torch::Tensor& mask, double dropout) {
  if (kind_ == AttentionKind::kSelf && query.is_same(memory)) {
    auto qkv = Project(query);
    return Attend(qkv[0], qkv[1], qkv[2], mask, dropout);
  }
  auto q = SplitHeads(q_proj_->Forward(query));
  auto k = SplitHeads(k_proj_->Forward(memory));
  auto v = SplitHeads(v_proj_->Forward(memory));
  return Attend(q, k, v, mask, dropout);
}

KeyValueCache MultiHeadAttention::ProjectKeyValue(const torch::Tensor& memory) {
  KeyValueCache cache;
  if (kind_ == AttentionKind::kCross) {
    auto kv = Project(memory);
    cache.keys = kv[0];
    cache.values = kv[1];
  } else {
    cache.keys = SplitHeads(k_proj_->Forward(memory));
    cache.values = SplitHeads(v_proj_->Forward(memory));
  }
  cache.length = memory.size(1);
  return cache;
}

torch::Tensor MultiHeadAttention::ForwardIncremental(const torch::Tensor& x, KeyValueCache* cache,
                                                     const StepPositions& step) {
  torch::Tensor q, k, v;
  if (kind_ == AttentionKind::kSelf) {
    auto qkv = Project(x);
    q = qkv[0], k = qkv[1], v = qkv[2];
  } else {
    q = SplitHeads(q_proj_->Forward(x));
    k = SplitHeads(k_proj_->Forward(x));
    v = SplitHeads(v_proj_->Forward(x));
  }
  const int64_t capacity = cache->keys.defined() ? cache->keys.size(2) : 0;
  if (step.length > capacity) {
    // Grow geometrically (amortized O(1) copies per step) up to the limit.
    // LibTorch's attention multiplies masked slots by a zero weight, and
    // 0 * garbage could be NaN, so its cache is zero-filled; the fused CPU
    // kernel never reads a masked slot, so filling would only cost time.
    int64_t grown = std::max<int64_t>(kInitialCacheSlots, capacity * 2);
    if (step.capacity_limit > 0) grown = std::min(grown, step.capacity_limit);
    grown = std::max(grown, step.length);
    const bool fused = FusedKernelApplies(k, k, k, step.mask);
    auto keys = fused ? torch::empty({k.size(0), heads_, grown, head_dim_}, k.options())
                      : torch::zeros({k.size(0), heads_, grown, head_dim_}, k.options());
    auto values = fused ? torch::empty_like(keys) : torch::zeros_like(keys);
    if (capacity > 0) {
      keys.narrow(2, 0, capacity).copy_(cache->keys);
      values.narrow(2, 0, capacity).copy_(cache->values);
    }
    cache->keys = keys;
    cache->values = values;
  }
  if (step.uniform >= 0) {
    cache->keys.narrow(2, step.uniform, 1).copy_(k);
    cache->values.narrow(2, step.uniform, 1).copy_(v);
  } else {
    // Row r writes slot positions[r]: a scatter along the time axis, which
    // reads no index back to the host (CUDA graphs capture it).
    auto slot = step.positions.view({-1, 1, 1, 1}).expand_as(k);
    cache->keys.scatter_(2, slot, k);
    cache->values.scatter_(2, slot, v);
  }
  cache->length = step.length;
  return Attend(q, cache->keys.narrow(2, 0, step.length), cache->values.narrow(2, 0, step.length),
                step.mask, 0.0);
}

torch::Tensor MultiHeadAttention::ForwardCached(const torch::Tensor& query,
                                                const KeyValueCache& memory,
                                                const torch::Tensor& mask) {
  auto q = SplitHeads(q_proj_->Forward(query));
  return Attend(q, memory.keys, memory.values, mask, 0.0);
}

}  // namespace quantmt
