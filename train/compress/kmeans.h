// k-means for product quantization: k-means++ seeding, Lloyd iterations,
// empty clusters re-seeded. Device-agnostic torch code (CPU or CUDA).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace quantmt::compress {

struct KMeansOptions {
  int64_t k = 256;    // clusters
  int n_iter = 20;    // Lloyd iterations after seeding
  uint64_t seed = 1;  // seeding draws
  // Points per distance block: bounds the [chunk, k] distance matrix.
  int64_t chunk = 32768;
};

struct KMeansResult {
  torch::Tensor centroids;    // float32 [k, d], on the points' device
  torch::Tensor assignments;  // int64 [n]
  // Sum of squared distances of the points to their centroids: after seeding
  // (entry 0) and after each iteration (entries 1 .. n_iter). Lloyd's
  // algorithm never increases it.
  std::vector<double> distortion;
};

// Clusters points float [n, d]. With n < k, some centroids duplicate points.
// `init` [k, d], when defined, replaces k-means++ seeding (warm start).
KMeansResult KMeans(const torch::Tensor& points, const KMeansOptions& options,
                    const torch::Tensor& init = {});

// Index of the nearest centroid of every point: int64 [n].
torch::Tensor NearestCentroid(const torch::Tensor& points, const torch::Tensor& centroids,
                              int64_t chunk = 32768);

}  // namespace quantmt::compress
