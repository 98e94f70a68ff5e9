#include "kernels/int8_gemv_vnni.h"

#include <algorithm>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__)
#define QUANTMT_X86 1
#include <immintrin.h>
#endif

namespace quantmt::kernels {
namespace {

constexpr int64_t kColumns = 16;       // columns per 512-bit vector of int32
constexpr int64_t kBlocksPerStep = 4;  // column blocks accumulated together
constexpr int64_t kMaxRows = 4;        // rows accumulated together
// Below this many multiply-adds one thread is faster: waking a passive
// OpenMP worker costs several microseconds.
constexpr int64_t kParallelWork = int64_t{1} << 20;

#ifdef QUANTMT_X86

// Rows [0, rows) x column blocks [block, block + blocks): accumulators stay
// in registers for the whole k loop (rows * blocks <= 16 of them).
template <int kRows, int kBlocks>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void Tile(
    const uint8_t* a, int64_t a_stride, const int8_t* packed, int64_t block_stride,
    int64_t k_groups, const int32_t* compensation, int32_t* c, int64_t c_stride,
    int64_t columns_left) {
  __m512i acc[kRows][kBlocks];
  for (int r = 0; r < kRows; ++r) {
    for (int b = 0; b < kBlocks; ++b) acc[r][b] = _mm512_setzero_si512();
  }
  for (int64_t g = 0; g < k_groups; ++g) {
    __m512i w[kBlocks];
    for (int b = 0; b < kBlocks; ++b) {
      w[b] = _mm512_load_si512(packed + b * block_stride + g * 64);
    }
    for (int r = 0; r < kRows; ++r) {
      int32_t four;
      std::memcpy(&four, a + r * a_stride + 4 * g, 4);
      const __m512i x = _mm512_set1_epi32(four);
      for (int b = 0; b < kBlocks; ++b) acc[r][b] = _mm512_dpbusd_epi32(acc[r][b], x, w[b]);
    }
  }
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t valid = std::min<int64_t>(kColumns, columns_left - b * kColumns);
    if (valid <= 0) break;
    const __mmask16 mask = static_cast<__mmask16>((1u << valid) - 1);
    const __m512i comp = _mm512_loadu_si512(compensation + b * kColumns);
    for (int r = 0; r < kRows; ++r) {
      _mm512_mask_storeu_epi32(c + r * c_stride + b * kColumns, mask,
                               _mm512_sub_epi32(acc[r][b], comp));
    }
  }
}

using TileFunction = void (*)(const uint8_t*, int64_t, const int8_t*, int64_t, int64_t,
                              const int32_t*, int32_t*, int64_t, int64_t);

template <int kRows>
TileFunction TileFor(int64_t blocks) {
  switch (blocks) {
    case 1:
      return Tile<kRows, 1>;
    case 2:
      return Tile<kRows, 2>;
    case 3:
      return Tile<kRows, 3>;
    default:
      return Tile<kRows, 4>;
  }
}

TileFunction TileFor(int64_t rows, int64_t blocks) {
  switch (rows) {
    case 1:
      return TileFor<1>(blocks);
    case 2:
      return TileFor<2>(blocks);
    case 3:
      return TileFor<3>(blocks);
    default:
      return TileFor<4>(blocks);
  }
}

#endif  // QUANTMT_X86

}  // namespace

bool HaveAvx512Vnni() {
#ifdef QUANTMT_X86
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vnni");
#else
  return false;
#endif
}

Int8GemvVnni::Int8GemvVnni(const int8_t* weight, int64_t n, int64_t k)
    : n_(n), k_(k), k_padded_((k + 3) / 4 * 4), n_blocks_((n + kColumns - 1) / kColumns) {
  // 64-byte aligned: over-allocate and align the start.
  packed_.assign(n_blocks_ * k_padded_ * kColumns + 64, 0);
  compensation_.assign(n_blocks_ * kColumns, 0);
  int8_t* base = Packed();
  for (int64_t col = 0; col < n; ++col) {
    int32_t sum = 0;
    for (int64_t i = 0; i < k; ++i) {
      const int8_t value = weight[col * k + i];
      sum += value;
      // block, group of four k, column within the block, k within the group
      base[(col / kColumns) * k_padded_ * kColumns + (i / 4) * 64 + (col % kColumns) * 4 + i % 4] =
          value;
    }
    compensation_[col] = 128 * sum;
  }
}

int8_t* Int8GemvVnni::Packed() {
  auto address = reinterpret_cast<uintptr_t>(packed_.data());
  return packed_.data() + ((64 - address % 64) % 64);
}

const int8_t* Int8GemvVnni::Packed() const { return const_cast<Int8GemvVnni*>(this)->Packed(); }

void Int8GemvVnni::Run(const int8_t* a, int64_t m, int32_t* c, int threads) const {
#ifdef QUANTMT_X86
  // A + 128 as unsigned bytes, k padded with 128 (i.e. 0) to whole groups.
  thread_local std::vector<uint8_t> shifted;
  shifted.assign(m * k_padded_, 128);
  for (int64_t r = 0; r < m; ++r) {
    for (int64_t i = 0; i < k_; ++i) {
      shifted[r * k_padded_ + i] = static_cast<uint8_t>(a[r * k_ + i] + 128);
    }
  }
  const int8_t* packed = Packed();
  const int64_t block_stride = k_padded_ * kColumns;
  const int64_t steps = (n_blocks_ + kBlocksPerStep - 1) / kBlocksPerStep;
  const uint8_t* a_shifted = shifted.data();
#pragma omp parallel for num_threads(threads) \
    schedule(static) if (threads > 1 && steps > 1 && m * n_ * k_ >= kParallelWork)
  for (int64_t step = 0; step < steps; ++step) {
    const int64_t block = step * kBlocksPerStep;
    const int64_t blocks = std::min(kBlocksPerStep, n_blocks_ - block);
    for (int64_t row = 0; row < m; row += kMaxRows) {
      const int64_t rows = std::min(kMaxRows, m - row);
      TileFor(rows, blocks)(a_shifted + row * k_padded_, k_padded_, packed + block * block_stride,
                            block_stride, k_padded_ / 4, compensation_.data() + block * kColumns,
                            c + row * n_ + block * kColumns, n_, n_ - block * kColumns);
    }
  }
#endif  // QUANTMT_X86
}

}  // namespace quantmt::kernels
