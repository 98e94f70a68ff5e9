// DAQ compression: k-means, bucketed product quantization and Quant-Noise.
#include <gtest/gtest.h>

#include <cmath>

#include "model/daq_kernels.h"
#include "train/compress/daq_quantizer.h"
#include "train/compress/daq_train_linear.h"
#include "train/compress/kmeans.h"

namespace quantmt::compress {
namespace {

// Points around 20 centres, plus exact duplicates.
torch::Tensor ClusteredPoints(int64_t n, int64_t d, uint64_t seed) {
  torch::manual_seed(seed);
  auto centres = torch::randn({20, d}) * 3;
  auto which = torch::randint(0, 20, {n}, torch::kLong);
  return centres.index_select(0, which) + 0.3 * torch::randn({n, d});
}

TEST(KMeansTest, DistortionNeverIncreases) {
  auto points = ClusteredPoints(3000, 8, 1);
  for (int64_t k : {16, 64}) {
    KMeansOptions options;
    options.k = k;
    options.n_iter = 15;
    options.chunk = 1000;  // several distance blocks
    KMeansResult result = KMeans(points, options);
    ASSERT_EQ(result.distortion.size(), 16u);
    for (size_t i = 1; i < result.distortion.size(); ++i) {
      // Exact Lloyd steps never increase it; float32 distances may pick a
      // centroid a few ulps farther than the nearest.
      EXPECT_LE(result.distortion[i], result.distortion[i - 1] * (1 + 1e-5)) << "iteration " << i;
    }
    EXPECT_LT(result.distortion.back(), result.distortion.front());
    // The recorded distortion is that of the returned codebook.
    auto error = (points - result.centroids.index_select(0, result.assignments)).pow(2).sum();
    EXPECT_NEAR(error.item<double>(), result.distortion.back(), 1e-3 * result.distortion.back());
  }
}

TEST(KMeansTest, MoreClustersThanDistinctPointsIsExact) {
  // 10 distinct points, 16 clusters: empty clusters must not produce NaN,
  // and every point is its own centroid.
  auto points = torch::randn({10, 4}).repeat({30, 1});
  KMeansOptions options;
  options.k = 16;
  options.n_iter = 5;
  KMeansResult result = KMeans(points, options);
  EXPECT_TRUE(torch::isfinite(result.centroids).all().item<bool>());
  EXPECT_NEAR(result.distortion.back(), 0.0, 1e-6);
}

TEST(DaqMatrixTest, BucketsAndCentroidsLowerTheError) {
  torch::manual_seed(2);
  auto weight = torch::randn({96, 64});
  double previous = 1e30;
  for (const auto& [buckets, centroids] :
       std::vector<std::pair<int64_t, int64_t>>{{1, 16}, {4, 16}, {4, 64}}) {
    DaqMatrixOptions options;
    options.block = 4;
    options.buckets = buckets;
    options.centroids = centroids;
    options.n_iter = 8;
    DaqMatrix matrix = QuantizeMatrix(weight, options);
    ASSERT_EQ(matrix.codes.sizes().vec(), (std::vector<int64_t>{96, 16}));
    ASSERT_EQ(matrix.centroids.sizes().vec(), (std::vector<int64_t>{buckets, centroids, 4}));
    const double error = (Reconstruct(matrix) - weight).pow(2).sum().item<double>();
    EXPECT_LT(error, previous) << buckets << " buckets, " << centroids << " centroids";
    previous = error;
  }
}

TEST(QuantNoiseTest, MaskHitsTheConfiguredFraction) {
  torch::manual_seed(9);
  const int64_t rows = 300, blocks = 400;
  for (double rate : {0.05, 0.1, 0.2}) {
    const double fraction =
        QuantNoiseMask(rows, blocks, rate, torch::kCPU).to(torch::kDouble).mean().item<double>();
    // 6 standard deviations of a binomial proportion: fails by chance ~1e-9.
    const double sigma = std::sqrt(rate * (1 - rate) / (rows * blocks));
    EXPECT_NEAR(fraction, rate, 6 * sigma) << "rate " << rate;
  }
  EXPECT_FALSE(QuantNoiseMask(10, 10, 0.0, torch::kCPU).any().item<bool>());
  EXPECT_TRUE(QuantNoiseMask(10, 10, 1.0, torch::kCPU).all().item<bool>());
}

TEST(QuantNoiseTest, TrainingReplacesThatFractionOfBlocksByCentroids) {
  torch::manual_seed(4);
  DaqParams params;
  params.centroids = 16;
  params.buckets = 2;
  QuantNoiseOptions noise;
  noise.rate = 0.2;
  auto make = DaqTrainFactory(params, {}, noise);
  auto layer =
      std::dynamic_pointer_cast<DaqTrainLinear>(make({64, 200, true, LinearRole::kFeedForward}));
  ASSERT_TRUE(layer && layer->has_layout() && !layer->quantized());
  layer->train();
  auto noisy = layer->Weight();
  auto changed = (noisy - layer->weight()).view({200, 8, 8}).abs().amax(2) > 0;
  const double fraction = changed.to(torch::kDouble).mean().item<double>();
  const double sigma = std::sqrt(0.2 * 0.8 / 1600);
  EXPECT_NEAR(fraction, 0.2, 6 * sigma);
  // Straight-through: the gradient reaches every weight unchanged.
  noisy.sum().backward();
  EXPECT_TRUE(layer->weight().grad().equal(torch::ones({200, 64})));
  // Evaluation sees the float weights.
  layer->eval();
  EXPECT_TRUE(layer->Weight().equal(layer->weight()));
}

TEST(DaqTrainLinearTest, QuantizedLayerTrainsItsCentroids) {
  torch::manual_seed(6);
  DaqParams params;
  params.centroids = 16;
  auto make = DaqTrainFactory(params, {"feed_forward"}, {});
  auto layer =
      std::dynamic_pointer_cast<DaqTrainLinear>(make({32, 48, false, LinearRole::kFeedForward}));
  ASSERT_TRUE(layer && layer->quantized());
  auto weight = torch::randn({48, 32});
  layer->QuantizeFrom(weight, 5, 1);
  EXPECT_TRUE(layer->ValidateWeights().ok());
  auto before = layer->centroids().clone();
  auto output = layer->Forward(torch::randn({3, 32}));
  output.pow(2).sum().backward();
  ASSERT_TRUE(layer->centroids().grad().defined());
  EXPECT_GT(layer->centroids().grad().abs().sum().item<double>(), 0.0);
  // The codes of the layer reconstruct the k-means approximation of `weight`.
  EXPECT_LT((layer->Weight() - weight).pow(2).mean().item<double>(),
            weight.pow(2).mean().item<double>());
  EXPECT_TRUE(before.equal(layer->centroids()));  // no optimizer step yet
}

}  // namespace
}  // namespace quantmt::compress
