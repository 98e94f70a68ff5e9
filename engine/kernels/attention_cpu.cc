#include "kernels/attention_cpu.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels/vector_clones.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define QUANTMT_ATTENTION_AVX512 1
#endif

namespace quantmt::kernels {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// exp(x) for the softmax's x <= 0, in a form the compiler vectorizes
// (std::exp stays a scalar call per key): x = n ln2 + r with |r| <= ln2/2,
// e^r by Cephes' expf polynomial (about 1 ulp), 2^n put into the exponent
// bits. Below -87 (and for -inf, a masked key) the result is exactly 0,
// which the weighted sum reads as "skip this key".
inline float ExpNonPositive(float x) {
  const float clamped = std::max(x, -87.0f);
  const float n = std::nearbyint(clamped * 1.44269504088896341f);
  const float r = clamped - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float power;
  std::memcpy(&power, &bits, sizeof(power));
  return x < -87.0f ? 0.0f : p * power;
}

// scores[t] = exp(scores[t] - highest), the softmax's numerators; returns
// 1 / their sum. Inlined, so it vectorizes for its caller's instruction set.
inline float ExponentiateScores(float* scores, int64_t keys, float highest) {
  float total = 0.0f;
#pragma omp simd reduction(+ : total)
  for (int64_t t = 0; t < keys; ++t) {
    scores[t] = ExpNonPositive(scores[t] - highest);
    total += scores[t];
  }
  return 1.0f / total;
}

struct Pair {
  const float* query;  // its first query
  int64_t query_stride;
  const float* keys;
  int64_t key_stride;
  const float* values;
  int64_t value_stride;
  const float* mask;  // row of its first query, or null
  int64_t mask_query_stride, mask_key_stride;
  float* out;  // its first query's output
  int64_t out_stride;
};

// All queries of one (sentence, head), any head size; `scores` is scratch
// of `keys` floats. Inlined into its caller, so a key costs a few vector
// instructions rather than two calls.
inline void AttendPair(const Pair& pair, int64_t queries, int64_t keys, int64_t head_dim,
                       float scale, float* scores) {
  for (int64_t i = 0; i < queries; ++i) {
    const float* query = pair.query + i * pair.query_stride;
    const float* mask = pair.mask ? pair.mask + i * pair.mask_query_stride : nullptr;
    float* out = pair.out + i * pair.out_stride;
    float highest = kNegInf;
    for (int64_t t = 0; t < keys; ++t) {
      // A masked slot is never read: a cache slot no row has written yet may
      // hold anything, so the cache need not be zero-filled.
      const float bias = mask ? mask[t * pair.mask_key_stride] : 0.0f;
      float dot = 0.0f;
      if (bias != kNegInf) {
        const float* key = pair.keys + t * pair.key_stride;
#pragma omp simd reduction(+ : dot)
        for (int64_t d = 0; d < head_dim; ++d) dot += query[d] * key[d];
      }
      scores[t] = bias == kNegInf ? kNegInf : scale * dot + bias;
      highest = std::max(highest, scores[t]);
    }
    std::fill(out, out + head_dim, 0.0f);
    if (highest == kNegInf) continue;  // every key masked: zeros
    const float inverse_total = ExponentiateScores(scores, keys, highest);
    for (int64_t t = 0; t < keys; ++t) {
      const float weight = scores[t] * inverse_total;
      if (weight == 0.0f) continue;  // masked (or negligible): never read
      const float* value = pair.values + t * pair.value_stride;
#pragma omp simd
      for (int64_t d = 0; d < head_dim; ++d) out[d] += weight * value[d];
    }
  }
}

#if QUANTMT_ATTENTION_AVX512
// Head size 64 with AVX-512 (the reference shape's and the shipped models'):
// a query, and the weighted sum, each live in four registers. The generic
// loop above keeps the sum in memory across keys and, without -ffast-math,
// reduces each dot product one lane after the other (16 dependent adds a
// key: most of the attention time at batch 64 under perf).
// The sum of a register's 16 lanes as a tree, through memory: GCC 12's
// 512-to-256-bit intrinsics (and so _mm512_reduce_add_ps) draw a false
// -Wmaybe-uninitialized, and the store is forwarded to the loads anyway.
__attribute__((target("avx512f"))) inline float SumLanes(__m512 x) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, x);
  const __m128 four = _mm_add_ps(_mm_add_ps(_mm_load_ps(lanes), _mm_load_ps(lanes + 4)),
                                 _mm_add_ps(_mm_load_ps(lanes + 8), _mm_load_ps(lanes + 12)));
  const __m128 two = _mm_add_ps(four, _mm_movehl_ps(four, four));
  return _mm_cvtss_f32(_mm_add_ss(two, _mm_movehdup_ps(two)));
}

__attribute__((target("avx512f"))) void AttendPair64Avx512(const Pair& pair, int64_t queries,
                                                           int64_t keys, float scale,
                                                           float* scores) {
  for (int64_t i = 0; i < queries; ++i) {
    const float* query = pair.query + i * pair.query_stride;
    const float* mask = pair.mask ? pair.mask + i * pair.mask_query_stride : nullptr;
    const __m512 q0 = _mm512_loadu_ps(query), q1 = _mm512_loadu_ps(query + 16);
    const __m512 q2 = _mm512_loadu_ps(query + 32), q3 = _mm512_loadu_ps(query + 48);
    float highest = kNegInf;
    const float* key = pair.keys;
    for (int64_t t = 0; t < keys; ++t, key += pair.key_stride) {
      const float bias = mask ? mask[t * pair.mask_key_stride] : 0.0f;
      if (bias == kNegInf) {  // masked: never read (see AttendPair)
        scores[t] = kNegInf;
        continue;
      }
      __m512 even = _mm512_mul_ps(q0, _mm512_loadu_ps(key));
      __m512 odd = _mm512_mul_ps(q1, _mm512_loadu_ps(key + 16));
      even = _mm512_fmadd_ps(q2, _mm512_loadu_ps(key + 32), even);
      odd = _mm512_fmadd_ps(q3, _mm512_loadu_ps(key + 48), odd);
      scores[t] = scale * SumLanes(_mm512_add_ps(even, odd)) + bias;
      highest = std::max(highest, scores[t]);
    }
    float* out = pair.out + i * pair.out_stride;
    __m512 o0 = _mm512_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
    if (highest != kNegInf) {
      const float inverse_total = ExponentiateScores(scores, keys, highest);
      const float* value = pair.values;
      for (int64_t t = 0; t < keys; ++t, value += pair.value_stride) {
        if (scores[t] == 0.0f) continue;  // masked (or negligible): never read
        const __m512 weight = _mm512_set1_ps(scores[t] * inverse_total);
        o0 = _mm512_fmadd_ps(weight, _mm512_loadu_ps(value), o0);
        o1 = _mm512_fmadd_ps(weight, _mm512_loadu_ps(value + 16), o1);
        o2 = _mm512_fmadd_ps(weight, _mm512_loadu_ps(value + 32), o2);
        o3 = _mm512_fmadd_ps(weight, _mm512_loadu_ps(value + 48), o3);
      }
    }
    _mm512_storeu_ps(out, o0);
    _mm512_storeu_ps(out + 16, o1);
    _mm512_storeu_ps(out + 32, o2);
    _mm512_storeu_ps(out + 48, o3);
  }
}

bool HaveAvx512() {
  static const bool have = __builtin_cpu_supports("avx512f");
  return have;
}
#endif

// Any head size, and CPUs without AVX-512: one indirect call per (sentence,
// head), not per key.
QUANTMT_VECTOR_CLONES
void AttendPairAnySize(const Pair& pair, int64_t queries, int64_t keys, int64_t head_dim,
                       float scale, float* scores) {
  AttendPair(pair, queries, keys, head_dim, scale, scores);
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
    for (int64_t index = 0; index < pairs; ++index) {
      const int64_t b = index / shape.heads;
      const int64_t h = index % shape.heads;
      const Pair pair{q.data + b * q.batch_stride + h * q.head_stride,
                      q.time_stride,
                      k.data + b * k.batch_stride + h * k.head_stride,
                      k.time_stride,
                      v.data + b * v.batch_stride + h * v.head_stride,
                      v.time_stride,
                      mask.data ? mask.data + b * mask.batch_stride : nullptr,
                      mask.query_stride,
                      mask.key_stride,
                      out + (b * shape.queries * shape.heads + h) * shape.head_dim,
                      shape.heads * shape.head_dim};
#if QUANTMT_ATTENTION_AVX512
      if (shape.head_dim == 64 && HaveAvx512()) {
        AttendPair64Avx512(pair, shape.queries, shape.keys, scale, scores.data());
        continue;
      }
#endif
      AttendPairAnySize(pair, shape.queries, shape.keys, shape.head_dim, scale, scores.data());
    }
  }
}

}  // namespace quantmt::kernels
