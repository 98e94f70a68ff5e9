#include "model/daq_kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace quantmt::daq {
namespace {

// sum_j table[j * K + codes[j]] for j < nb: one row's share of the product.
float GatherSumScalar(const float* table, const uint8_t* codes, int64_t nb, int64_t K) {
  float sum = 0.0f;
  for (int64_t j = 0; j < nb; ++j) sum += table[j * K + codes[j]];
  return sum;
}

#if defined(__x86_64__)
// The same with AVX-512 gathers, 16 blocks at a time (summed in another
// order, so results may differ from the scalar loop in the last bits).
__attribute__((target("avx512f"))) float GatherSumAvx512(const float* table, const uint8_t* codes,
                                                         int64_t nb, int64_t K) {
  __m512 sum = _mm512_setzero_ps();
  const int32_t k = static_cast<int32_t>(K);
  __m512i base =
      _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                         _mm512_set1_epi32(k));
  const __m512i step = _mm512_set1_epi32(16 * k);
  int64_t j = 0;
  for (; j + 16 <= nb; j += 16) {
    const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(codes + j));
    // The masked forms: GCC 12 warns about the undefined lanes of the others.
    const __m512i index = _mm512_add_epi32(base, _mm512_maskz_cvtepu8_epi32(0xFFFF, bytes));
    sum =
        _mm512_add_ps(sum, _mm512_mask_i32gather_ps(_mm512_setzero_ps(), 0xFFFF, index, table, 4));
    base = _mm512_add_epi32(base, step);
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sum);
  float total = 0.0f;
  for (float lane : lanes) total += lane;
  for (; j < nb; ++j) total += table[j * K + codes[j]];
  return total;
}

bool HasAvx512() {
  static const bool has = __builtin_cpu_supports("avx512f");
  return has;
}
#endif

float GatherSum(const float* table, const uint8_t* codes, int64_t nb, int64_t K) {
#if defined(__x86_64__)
  if (HasAvx512()) return GatherSumAvx512(table, codes, nb, K);
#endif
  return GatherSumScalar(table, codes, nb, K);
}

}  // namespace

torch::Tensor PackNibbles(const torch::Tensor& codes) {
  const int64_t n = codes.size(1);
  auto padded =
      n % 2 == 0 ? codes
                 : torch::nn::functional::pad(codes, torch::nn::functional::PadFuncOptions({0, 1}));
  auto pairs = padded.view({codes.size(0), -1, 2});
  return pairs.select(2, 0).bitwise_or(pairs.select(2, 1).__lshift__(4)).contiguous();
}

torch::Tensor UnpackNibbles(const torch::Tensor& packed, int64_t n) {
  auto low = packed.bitwise_and(15);
  auto high = packed.__rshift__(4);
  return torch::stack({low, high}, 2).view({packed.size(0), -1}).narrow(1, 0, n).contiguous();
}

torch::Tensor EvenBucketOffsets(int64_t rows, int64_t buckets) {
  auto offsets = torch::empty({buckets + 1}, torch::kInt32);
  auto* data = offsets.data_ptr<int32_t>();
  for (int64_t b = 0; b <= buckets; ++b) data[b] = static_cast<int32_t>(b * rows / buckets);
  return offsets;
}

torch::Tensor RowBuckets(const torch::Tensor& offsets, int64_t rows) {
  auto rows_index = torch::arange(rows, offsets.options().dtype(torch::kInt32));
  // bucket(r) = number of interior boundaries <= r.
  auto inner = offsets.narrow(0, 1, offsets.size(0) - 2).contiguous();
  return torch::bucketize(rows_index, inner, /*out_int32=*/false, /*right=*/true);
}

torch::Tensor DecodeRows(const torch::Tensor& centroids, const torch::Tensor& codes,
                         const torch::Tensor& buckets) {
  const int64_t K = centroids.size(1), bs = centroids.size(2);
  auto index = buckets.unsqueeze(1) * K + codes.to(torch::kLong);
  auto rows = centroids.reshape({-1, bs}).index_select(0, index.reshape({-1}));
  return rows.view({codes.size(0), codes.size(1) * bs});
}

Int8Centroids QuantizeCentroidsInt8(const torch::Tensor& centroids, torch::ScalarType scale_dtype) {
  auto c = centroids.detach().to(torch::kFloat32);
  auto max_abs = c.abs().amax({1, 2});
  auto scales = torch::where(max_abs > 0, max_abs / 127.0, torch::ones_like(max_abs));
  scales = scales.to(scale_dtype).to(torch::kFloat32);
  auto values = torch::round(c / scales.view({-1, 1, 1})).clamp(-127, 127).to(torch::kInt8);
  return {values, scales.to(scale_dtype)};
}

torch::Tensor DequantizeCentroids(const torch::Tensor& values, const torch::Tensor& scales) {
  return values.to(scales.scalar_type()) * scales.view({-1, 1, 1});
}

torch::Tensor LookupLinear(const torch::Tensor& input, const torch::Tensor& centroids,
                           const torch::Tensor& codes, const torch::Tensor& offsets, int bits,
                           int64_t out_features, const torch::Tensor& bias) {
  const int64_t M = input.size(0), in = input.size(1);
  const int64_t K = centroids.size(1), bs = centroids.size(2);
  const int64_t nb = in / bs;
  // Tables of every bucket: [N, M * nb, K], one GEMM per bucket.
  auto blocks = input.contiguous().view({1, M * nb, bs});
  auto tables = torch::matmul(blocks, centroids.transpose(1, 2)).contiguous();
  auto output = torch::empty({M, out_features}, input.options());

  const float* table_data = tables.data_ptr<float>();
  const uint8_t* code_data = codes.data_ptr<uint8_t>();
  const int32_t* offset_data = offsets.data_ptr<int32_t>();
  const float* bias_data = bias.defined() ? bias.data_ptr<float>() : nullptr;
  float* out_data = output.data_ptr<float>();
  const int64_t code_columns = codes.size(1);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, nb * M));
  at::parallel_for(0, out_features, grain, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> unpacked(bits == 4 ? nb : 0);
    int64_t b = 0;
    while (offset_data[b + 1] <= begin) ++b;
    for (int64_t r = begin; r < end; ++r) {
      while (offset_data[b + 1] <= r) ++b;
      const uint8_t* row = code_data + r * code_columns;
      if (bits == 4) {
        for (int64_t j = 0; j < nb; ++j) unpacked[j] = (row[j / 2] >> ((j % 2) * 4)) & 15;
        row = unpacked.data();
      }
      const float add = bias_data != nullptr ? bias_data[r] : 0.0f;
      for (int64_t m = 0; m < M; ++m) {
        const float* table = table_data + (b * M + m) * nb * K;
        out_data[m * out_features + r] = GatherSum(table, row, nb, K) + add;
      }
    }
  });
  return output;
}

}  // namespace quantmt::daq
