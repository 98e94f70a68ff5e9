#include "kernels/attention_cpu.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/vector_clones.h"

namespace quantmt::kernels {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

QUANTMT_VECTOR_CLONES
float Dot(const float* a, const float* b, int64_t count) {
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t i = 0; i < count; ++i) sum += a[i] * b[i];
  return sum;
}

QUANTMT_VECTOR_CLONES
void AddScaled(float weight, const float* x, int64_t count, float* out) {
#pragma omp simd
  for (int64_t i = 0; i < count; ++i) out[i] += weight * x[i];
}

// One query of one (sentence, head): `scores` is scratch of `keys` floats.
void AttendOneQuery(const float* query, const float* keys, int64_t key_stride, const float* values,
                    int64_t value_stride, const float* mask, int64_t mask_stride,
                    const AttentionShape& shape, float scale, float* scores, float* out) {
  float highest = kNegInf;
  for (int64_t t = 0; t < shape.keys; ++t) {
    // A masked slot is never read: a cache slot no row has written yet may
    // hold anything, so the cache need not be zero-filled.
    const float bias = mask != nullptr ? mask[t * mask_stride] : 0.0f;
    scores[t] = bias == kNegInf ? kNegInf
                                : scale * Dot(query, keys + t * key_stride, shape.head_dim) + bias;
    highest = std::max(highest, scores[t]);
  }
  std::fill(out, out + shape.head_dim, 0.0f);
  if (highest == kNegInf) return;  // every key masked
  float total = 0.0f;
  for (int64_t t = 0; t < shape.keys; ++t) {
    scores[t] = std::exp(scores[t] - highest);
    total += scores[t];
  }
  const float inverse_total = 1.0f / total;
  for (int64_t t = 0; t < shape.keys; ++t) {
    if (scores[t] == 0.0f) continue;  // masked: never read
    AddScaled(scores[t] * inverse_total, values + t * value_stride, shape.head_dim, out);
  }
}

}  // namespace

void AttentionForward(const HeadsView& q, const HeadsView& k, const HeadsView& v,
                      const MaskView& mask, const AttentionShape& shape, float scale, float* out,
                      int threads) {
  const int64_t pairs = shape.batch * shape.heads;
  const int64_t work = pairs * shape.queries * shape.keys * shape.head_dim;
  // Below this a parallel region costs more than it saves.
  const bool parallel = threads > 1 && pairs > 1 && work >= (1 << 16);
#pragma omp parallel num_threads(threads) if (parallel)
  {
    std::vector<float> scores(shape.keys);
#pragma omp for schedule(static)
    for (int64_t pair = 0; pair < pairs; ++pair) {
      const int64_t b = pair / shape.heads;
      const int64_t h = pair % shape.heads;
      const float* keys = k.data + b * k.batch_stride + h * k.head_stride;
      const float* values = v.data + b * v.batch_stride + h * v.head_stride;
      for (int64_t i = 0; i < shape.queries; ++i) {
        const float* query = q.data + b * q.batch_stride + h * q.head_stride + i * q.time_stride;
        const float* mask_row =
            mask.data ? mask.data + b * mask.batch_stride + i * mask.query_stride : nullptr;
        float* destination = out + ((b * shape.queries + i) * shape.heads + h) * shape.head_dim;
        AttendOneQuery(query, keys, k.time_stride, values, v.time_stride, mask_row, mask.key_stride,
                       shape, scale, scores.data(), destination);
      }
    }
  }
}

}  // namespace quantmt::kernels
