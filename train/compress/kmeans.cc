#include "train/compress/kmeans.h"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>

namespace quantmt::compress {
namespace {

// Squared distances of every point to its assigned centroid: float [n].
torch::Tensor SquaredDistances(const torch::Tensor& points, const torch::Tensor& centroids,
                               const torch::Tensor& assignments) {
  return (points - centroids.index_select(0, assignments)).pow(2).sum(1);
}

// k-means++ (Arthur and Vassilvitskii 2007): each next centroid is a point
// drawn with probability proportional to its squared distance to the
// centroids chosen so far.
torch::Tensor SeedPlusPlus(const torch::Tensor& points, int64_t k, torch::Generator& generator) {
  const int64_t n = points.size(0);
  auto centroids = torch::empty({k, points.size(1)}, points.options());
  auto cpu_options = torch::TensorOptions().dtype(torch::kLong);
  int64_t first = torch::randint(n, {1}, generator, cpu_options).item<int64_t>();
  centroids[0] = points[first];
  auto nearest = (points - points[first]).pow(2).sum(1);
  for (int64_t c = 1; c < k; ++c) {
    auto weights = nearest.to(torch::kCPU, torch::kDouble);
    int64_t pick;
    if (weights.sum().item<double>() > 0) {
      pick = torch::multinomial(weights, 1, false, generator).item<int64_t>();
    } else {  // every point already is a centroid: duplicate one
      pick = torch::randint(n, {1}, generator, cpu_options).item<int64_t>();
    }
    centroids[c] = points[pick];
    nearest = torch::minimum(nearest, (points - points[pick]).pow(2).sum(1));
  }
  return centroids;
}

}  // namespace

torch::Tensor NearestCentroid(const torch::Tensor& points, const torch::Tensor& centroids,
                              int64_t chunk) {
  // argmin_c |x - c|^2 = argmin_c (|c|^2 - 2 x.c)
  auto norms = centroids.pow(2).sum(1);
  std::vector<torch::Tensor> parts;
  for (int64_t begin = 0; begin < points.size(0); begin += chunk) {
    auto block = points.narrow(0, begin, std::min(chunk, points.size(0) - begin));
    parts.push_back(torch::addmm(norms, block, centroids.t(), 1.0, -2.0).argmin(1));
  }
  return torch::cat(parts);
}

KMeansResult KMeans(const torch::Tensor& points_in, const KMeansOptions& options,
                    const torch::Tensor& init) {
  torch::NoGradGuard no_grad;
  auto points = points_in.detach().to(torch::kFloat32).contiguous();
  const int64_t k = options.k;
  torch::Generator generator = at::detail::createCPUGenerator(options.seed);
  KMeansResult result;
  result.centroids = init.defined() ? init.detach().to(points.options()).clone()
                                    : SeedPlusPlus(points, k, generator);
  result.assignments = NearestCentroid(points, result.centroids, options.chunk);
  auto distances = SquaredDistances(points, result.centroids, result.assignments);
  result.distortion.push_back(distances.sum().item<double>());
  for (int iteration = 0; iteration < options.n_iter; ++iteration) {
    // Update: each centroid moves to the mean of its points.
    auto sums = torch::zeros_like(result.centroids).index_add_(0, result.assignments, points);
    auto counts = torch::bincount(result.assignments, {}, k).to(points.scalar_type());
    auto filled = counts > 0;
    result.centroids = torch::where(filled.unsqueeze(1), sums / counts.clamp_min(1).unsqueeze(1),
                                    result.centroids);
    // An empty cluster takes the point farthest from its centroid, which
    // can only lower the distortion.
    auto empty = (~filled).nonzero().flatten();
    if (empty.numel() > 0) {
      const int64_t count = std::min(empty.numel(), points.size(0));
      auto far = std::get<1>(distances.topk(count));
      result.centroids.index_copy_(0, empty.narrow(0, 0, count), points.index_select(0, far));
    }
    result.assignments = NearestCentroid(points, result.centroids, options.chunk);
    distances = SquaredDistances(points, result.centroids, result.assignments);
    result.distortion.push_back(distances.sum().item<double>());
  }
  return result;
}

}  // namespace quantmt::compress
