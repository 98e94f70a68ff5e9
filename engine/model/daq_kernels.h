// Product-quantization (DAQ) kernels: code packing, row decoding, int8
// centroids and the lookup-table matrix product.
//
// A quantized weight matrix W [out, in] with block size bs is stored as
//   centroids [N, K, bs]  N buckets (codebooks) of K centroids each,
//   codes     [out, in / bs] uint8, the centroid of each block (packed two per
//             byte with 4-bit codes),
//   offsets   [N + 1] int32, bucket b owning rows offsets[b] .. offsets[b+1]-1,
// and W[r, j*bs : (j+1)*bs] = centroids[bucket(r), codes[r, j]].
#pragma once

#include <torch/torch.h>

#include <cstdint>

namespace quantmt::daq {

// 4-bit codes, two per byte: block j sits in byte j / 2, in the low nibble
// when j is even and the high nibble when j is odd; an odd last byte has a
// zero high nibble. codes uint8 [rows, n] (values < 16) -> [rows, ceil(n/2)].
torch::Tensor PackNibbles(const torch::Tensor& codes);
// The inverse: packed uint8 [rows, ceil(n/2)] -> uint8 [rows, n].
torch::Tensor UnpackNibbles(const torch::Tensor& packed, int64_t n);

// Equal-as-possible contiguous row ranges: int32 [buckets + 1], 0 .. rows.
torch::Tensor EvenBucketOffsets(int64_t rows, int64_t buckets);
// The bucket of every row: int64 [rows] on `offsets`' device.
torch::Tensor RowBuckets(const torch::Tensor& offsets, int64_t rows);

// Rows of the weight matrix: centroids [N, K, bs] (float), codes uint8
// [n, nb] (unpacked), buckets int64 [n] -> [n, nb * bs]. Differentiable in
// the centroids (training fine-tunes them through this).
torch::Tensor DecodeRows(const torch::Tensor& centroids, const torch::Tensor& codes,
                         const torch::Tensor& buckets);

// Symmetric int8 centroids with one scale per bucket: values int8 [N, K, bs],
// scales [N] with centroid = value * scale. A scale is max|c| / 127 of its
// bucket (1 for an all-zero bucket), rounded to `scale_dtype` before the
// values are computed, so that the stored scale is the one used.
struct Int8Centroids {
  torch::Tensor values;
  torch::Tensor scales;
};
Int8Centroids QuantizeCentroidsInt8(const torch::Tensor& centroids,
                                    torch::ScalarType scale_dtype = torch::kFloat32);
torch::Tensor DequantizeCentroids(const torch::Tensor& values, const torch::Tensor& scales);

// The lookup-table kernel (CPU, float32): output = input @ W^T + bias without
// materializing W. For every input row and block j it computes the dot
// products of the input's sub-vector j with the K centroids of each bucket
// (one small GEMM), then sums, for every output row r, the table entries its
// codes select. input [M, in], centroids float32 [N, K, bs], codes uint8
// [out, nb] (bits 8) or [out, ceil(nb/2)] (bits 4), offsets int32 [N + 1],
// bias [out] or undefined -> [M, out].
torch::Tensor LookupLinear(const torch::Tensor& input, const torch::Tensor& centroids,
                           const torch::Tensor& codes, const torch::Tensor& offsets, int bits,
                           int64_t out_features, const torch::Tensor& bias);

}  // namespace quantmt::daq
