#include "kernels/int8_gemm_vnni.h"

#include <algorithm>
#include <cstring>

#include "kernels/scratch.h"

#if defined(__x86_64__) && defined(__GNUC__)
#define QUANTMT_X86 1
#include <immintrin.h>
#endif

#ifdef _OPENMP
#include <omp.h>
#endif

namespace quantmt::kernels {
namespace {

constexpr int64_t kColumns = 16;     // columns per 512-bit vector of int32
constexpr int64_t kPanelBlocks = 4;  // column blocks of a panel (64 columns)
constexpr int64_t kTileRows = 6;     // 6 rows x 4 blocks: 24 accumulators of 32 registers
// Below this many multiply-adds one thread is faster: waking a passive
// OpenMP worker costs 20-25 us on the 2-vCPU machine of docs/benchmarks.md.
// Measured on whole decodes (docs/benchmarks.md): 2^22 was 7-9% faster
// than 2^20 at batch 1 and 8 and level at 32 and 64; 2^20 beat 2^18, 2^24
// and 2^25.
constexpr int64_t kParallelWork = int64_t{1} << 22;
// Inputs smaller than this (rows x k) are quantized before the parallel
// region: the barrier after a shared quantization costs more than it saves.
constexpr int64_t kParallelQuantize = int64_t{1} << 15;
// Rows of codes kept in the L2 cache while every panel of weights passes
// over them (encoder layers have batch x source length rows).
constexpr int64_t kRowBlockBytes = 192 * 1024;

// How many rows the next tile takes out of `left`: whole tiles of six, but
// two even tiles rather than a full one and a sliver (8 rows: 4 + 4).
int64_t TileRows(int64_t left) {
  if (left <= kTileRows) return left;
  if (left < 2 * kTileRows) return (left + 1) / 2;
  return kTileRows;
}

#ifdef QUANTMT_X86

// acc += x (unsigned bytes) . w (signed bytes), four at a time, in place.
// With the intrinsic, which returns a new value, GCC 12 copied every
// accumulator to another register and back around each multiply-add (and
// spilled some): half the kernel's speed. Tying the operand keeps it in place.
__attribute__((target("avx512f,avx512vnni"), always_inline)) inline void MultiplyAdd(__m512i& acc,
                                                                                     __m512i x,
                                                                                     __m512i w) {
  asm("vpdpbusd %2, %1, %0" : "+v"(acc) : "v"(x), "v"(w));
}

// One group of four k: acc[r][b] += a[r, 4g..4g+3] . the panel's block b.
template <int kRows, int kBlocks>
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) inline void GroupStep(
    __m512i (&acc)[kRows][kBlocks], const uint8_t* a, int64_t a_stride, const int8_t* panel,
    int64_t g) {
  const int8_t* group = panel + g * kBlocks * 64;
  __m512i w[kBlocks];
#pragma GCC unroll 4
  for (int b = 0; b < kBlocks; ++b) w[b] = _mm512_load_si512(group + b * 64);
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r) {
    int32_t four;
    std::memcpy(&four, a + r * a_stride + 4 * g, 4);
    const __m512i x = _mm512_set1_epi32(four);
#pragma GCC unroll 4
    for (int b = 0; b < kBlocks; ++b) MultiplyAdd(acc[r][b], x, w[b]);
  }
}

// Rows [row, row + kRows) x the kBlocks column blocks of one panel starting
// at `column`: the accumulators stay in registers for the whole k loop, then
// go out as int32 sums or as scaled floats. The unroll pragmas matter: GCC
// keeps the arrays in registers only when these loops disappear.
template <int kRows, int kBlocks, typename Output>
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void Tile(
    const uint8_t* a, int64_t a_stride, const int8_t* panel, int64_t k_groups,
    const int32_t* compensation, int64_t row, int64_t column, int64_t n, const Output& out) {
  __m512i acc[kRows][kBlocks];
#pragma GCC unroll 8
  for (int r = 0; r < kRows; ++r) {
#pragma GCC unroll 4
    for (int b = 0; b < kBlocks; ++b) acc[r][b] = _mm512_setzero_si512();
  }
  for (int64_t g = 0; g < k_groups; ++g) GroupStep<kRows, kBlocks>(acc, a, a_stride, panel, g);
#pragma GCC unroll 4
  for (int b = 0; b < kBlocks; ++b) {
    const int64_t first = column + b * kColumns;
    const int64_t valid = std::clamp<int64_t>(n - first, 0, kColumns);
    const auto mask = static_cast<__mmask16>((1u << valid) - 1);
    const __m512i comp = _mm512_maskz_loadu_epi32(mask, compensation + b * kColumns);
    if (out.values == nullptr) {
#pragma GCC unroll 8
      for (int r = 0; r < kRows; ++r) {
        _mm512_mask_storeu_epi32(out.sums + (row + r) * n + first, mask,
                                 _mm512_sub_epi32(acc[r][b], comp));
      }
      continue;
    }
    const __m512 column_scale = _mm512_maskz_loadu_ps(mask, out.column_scales + first);
    const __m512 bias =
        out.bias ? _mm512_maskz_loadu_ps(mask, out.bias + first) : _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < kRows; ++r) {
      const __m512 scale = _mm512_mul_ps(_mm512_set1_ps(out.row_scales[row + r]), column_scale);
      // The masked form: GCC 12 warns that the plain one's undefined
      // pass-through value may be used uninitialized.
      const __m512 sum = _mm512_maskz_cvtepi32_ps(mask, _mm512_sub_epi32(acc[r][b], comp));
      _mm512_mask_storeu_ps(out.values + (row + r) * n + first, mask,
                            _mm512_fmadd_ps(sum, scale, bias));
    }
  }
}

// One row for the kernel: codes + 128 as unsigned bytes, the padding up to
// padded_cols filled with 128 (a code of 0). The same numbers as
// QuantizeRowsSymmetric / QuantizeWithScale (kernels/int8_rows.h): the
// exact max |x|, one multiply by the same inverse, round half to even, clamp
// to +-127; but 16 at a time (GCC left the byte conversion scalar, and it
// was a third of a layer's time). scale > 0: static; otherwise the row's
// dynamic scale. Returns the scale used.
__attribute__((target("avx512f,avx512bw,avx512vl"))) float QuantizeRow(const float* x, int64_t cols,
                                                                       float scale, uint8_t* codes,
                                                                       int64_t padded_cols) {
  const auto tail_mask = [](int64_t count) {
    return static_cast<__mmask16>(count >= 16 ? 0xFFFF : (1u << count) - 1);
  };
  if (!(scale > 0.0f)) {
    __m512 max_abs = _mm512_setzero_ps();
    for (int64_t i = 0; i < cols; i += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(tail_mask(cols - i), x + i);
      max_abs = _mm512_max_ps(max_abs, _mm512_abs_ps(v));
    }
    scale = _mm512_reduce_max_ps(max_abs) / 127.0f;
  }
  const __m512 inverse = _mm512_set1_ps(scale > 0.0f ? 1.0f / scale : 0.0f);
  const __m512 low = _mm512_set1_ps(-127.0f), high = _mm512_set1_ps(127.0f);
  const __m512i offset = _mm512_set1_epi32(128);
  for (int64_t i = 0; i < cols; i += 16) {
    const __mmask16 mask = tail_mask(cols - i);
    __m512 q = _mm512_mul_ps(_mm512_maskz_loadu_ps(mask, x + i), inverse);
    q = _mm512_roundscale_ps(q, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    q = _mm512_min_ps(high, _mm512_max_ps(low, q));
    const __m512i shifted = _mm512_add_epi32(_mm512_cvtps_epi32(q), offset);
    _mm_mask_storeu_epi8(codes + i, mask, _mm512_cvtepi32_epi8(shifted));
  }
  std::fill(codes + cols, codes + padded_cols, uint8_t{128});
  return scale;
}

template <typename Output>
using TileFunction = void (*)(const uint8_t*, int64_t, const int8_t*, int64_t, const int32_t*,
                              int64_t, int64_t, int64_t, const Output&);

template <int kRows, typename Output>
TileFunction<Output> TileFor(int64_t blocks) {
  switch (blocks) {
    case 1:
      return Tile<kRows, 1, Output>;
    case 2:
      return Tile<kRows, 2, Output>;
    case 3:
      return Tile<kRows, 3, Output>;
    default:
      return Tile<kRows, 4, Output>;
  }
}

template <typename Output>
TileFunction<Output> TileFor(int64_t rows, int64_t blocks) {
  switch (rows) {
    case 1:
      return TileFor<1, Output>(blocks);
    case 2:
      return TileFor<2, Output>(blocks);
    case 3:
      return TileFor<3, Output>(blocks);
    case 4:
      return TileFor<4, Output>(blocks);
    case 5:
      return TileFor<5, Output>(blocks);
    default:
      return TileFor<6, Output>(blocks);
  }
}

#endif  // QUANTMT_X86

}  // namespace

// Where Run writes: int32 sums, or floats scaled as in Int8Scaling.
struct Int8GemmVnni::Output {
  int32_t* sums = nullptr;
  float* values = nullptr;
  const float* row_scales = nullptr;  // [m], with values
  const float* column_scales = nullptr;
  const float* bias = nullptr;
};

bool HaveAvx512Vnni() {
#ifdef QUANTMT_X86
  static const bool have =
      __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return have;
#else
  return false;
#endif
}

Int8GemmVnni::Int8GemmVnni(const int8_t* weight, int64_t n, int64_t k)
    : n_(n), k_(k), k_padded_((k + 3) / 4 * 4), n_blocks_((n + kColumns - 1) / kColumns) {
  // Panel by panel (64 columns), and inside a panel group by group of four
  // k, so that a tile reads its weights as one sequential stream. The last
  // panel may have fewer blocks; the ones before it are all whole.
  const int64_t k_groups = k_padded_ / 4;
  packed_.assign(n_blocks_ * kColumns * k_padded_ + 64, 0);  // + 64: alignment
  compensation_.assign(n_blocks_ * kColumns, 0);
  int8_t* base = const_cast<int8_t*>(Packed());
  for (int64_t col = 0; col < n; ++col) {
    const int64_t block = col / kColumns, panel = block / kPanelBlocks;
    const int64_t panel_blocks = std::min(kPanelBlocks, n_blocks_ - panel * kPanelBlocks);
    int8_t* panel_start = base + panel * kPanelBlocks * k_groups * 64;
    int32_t sum = 0;
    for (int64_t i = 0; i < k; ++i) {
      const int8_t value = weight[col * k + i];
      sum += value;
      panel_start[(i / 4) * panel_blocks * 64 + (block % kPanelBlocks) * 64 + (col % kColumns) * 4 +
                  i % 4] = value;
    }
    compensation_[col] = 128 * sum;
  }
}

const int8_t* Int8GemmVnni::Packed() const {
  const auto address = reinterpret_cast<uintptr_t>(packed_.data());
  return packed_.data() + ((64 - address % 64) % 64);
}

void Int8GemmVnni::Forward(const float* x, int64_t m, const Int8Scaling& scaling, float* out,
                           int threads) const {
  thread_local std::vector<uint8_t> shifted;
  thread_local std::vector<float> row_scales;
  uint8_t* codes = Scratch(shifted, m * k_padded_);
  float* scales = Scratch(row_scales, m);
  Output output;
  output.values = out;
  output.row_scales = scales;
  output.column_scales = scaling.column_scales;
  output.bias = scaling.bias;
  Run(codes, m, output, threads, [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      scales[r] =
          QuantizeRow(x + r * k_, k_, scaling.input_scale, codes + r * k_padded_, k_padded_);
    }
  });
}

void Int8GemmVnni::Multiply(const int8_t* a, int64_t m, int32_t* c, int threads) const {
  thread_local std::vector<uint8_t> shifted;
  uint8_t* codes = Scratch(shifted, m * k_padded_);
  Output output;
  output.sums = c;
  Run(codes, m, output, threads, [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      uint8_t* row = codes + r * k_padded_;
      // code + 128 modulo 256
      for (int64_t i = 0; i < k_; ++i) row[i] = static_cast<uint8_t>(a[r * k_ + i]) ^ 0x80;
      std::fill(row + k_, row + k_padded_, uint8_t{128});
    }
  });
}

void Int8GemmVnni::Run(const uint8_t* codes, int64_t m, const Output& output, int threads,
                       const std::function<void(int64_t, int64_t)>& prepare_rows) const {
#ifdef QUANTMT_X86
  const int64_t k_groups = k_padded_ / 4;
  const int64_t panels = (n_blocks_ + kPanelBlocks - 1) / kPanelBlocks;
  const int64_t row_block = std::max(kTileRows, kRowBlockBytes / k_padded_ / kTileRows * kTileRows);
  const int8_t* packed = Packed();
  auto multiply = [&](int64_t first_panel, int64_t last_panel) {
    for (int64_t block_start = 0; block_start < m; block_start += row_block) {
      const int64_t block_end = std::min(m, block_start + row_block);
      for (int64_t p = first_panel; p < last_panel; ++p) {
        const int64_t blocks = std::min(kPanelBlocks, n_blocks_ - p * kPanelBlocks);
        const int8_t* panel = packed + p * kPanelBlocks * k_groups * 64;
        const int64_t column = p * kPanelBlocks * kColumns;
        for (int64_t row = block_start; row < block_end;) {
          const int64_t rows = TileRows(block_end - row);
          TileFor<Output>(rows, blocks)(codes + row * k_padded_, k_padded_, panel, k_groups,
                                        compensation_.data() + column, row, column, n_, output);
          row += rows;
        }
      }
    }
  };
  const bool parallel = threads > 1 && panels > 1 && m * n_ * k_ >= kParallelWork;
  const bool quantize_in_region = parallel && m > 1 && m * k_ >= kParallelQuantize;
  if (!quantize_in_region) prepare_rows(0, m);
  if (!parallel) {
    multiply(0, panels);
    return;
  }
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int64_t thread = omp_get_thread_num(), count = omp_get_num_threads();
#else
    const int64_t thread = 0, count = 1;
#endif
    if (quantize_in_region) {
      prepare_rows(m * thread / count, m * (thread + 1) / count);
#pragma omp barrier
    }
    multiply(panels * thread / count, panels * (thread + 1) / count);
  }
#endif  // QUANTMT_X86
}

}  // namespace quantmt::kernels
