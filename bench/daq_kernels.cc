// DAQ layer speed: the lookup-table kernel against decompress-at-load (the
// float weight decoded once and packed for oneDNN, as the engine serves it),
// per layer shape and input rows, with the RAM each path holds. The
// per-layer rule in engine/model/daq_linear.cc (ChooseDaqKernel) comes from
// these tables.
#include "model/daq_kernels.h"

#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "model/daq_linear.h"

namespace {

struct Shape {
  const char* name;
  int64_t out, in, block;
};

double MedianMicros(quantmt::DaqLinear& layer, const torch::Tensor& input, int runs) {
  std::vector<double> micros;
  for (int run = 0; run <= runs; ++run) {  // run 0 warms up
    const auto start = std::chrono::steady_clock::now();
    auto output = layer.Forward(input);
    const double elapsed =
        std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - start).count();
    if (run > 0) micros.push_back(elapsed);
  }
  std::sort(micros.begin(), micros.end());
  return micros[micros.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"DAQ kernels: lookup tables vs decompress-then-GEMM"};
  int threads = 2, runs = 21;
  std::vector<int64_t> rows = {1, 4, 16, 64, 256};
  std::vector<int64_t> buckets = {1, 4};
  std::vector<int> bits = {8, 4};
  app.add_option("--threads", threads)->capture_default_str();
  app.add_option("--runs", runs, "Timed calls per cell (median reported)")->capture_default_str();
  app.add_option("--rows", rows, "Input rows (batch x positions)")->delimiter(',');
  app.add_option("--buckets", buckets)->delimiter(',');
  app.add_option("--bits", bits)->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(threads);
  torch::NoGradGuard no_grad;

  // models/default (d 384, FFN 1536, vocabulary 8000) and the reference shape (d 512, FFN 2048).
  const std::vector<Shape> shapes = {
      {"ffn fc1 384->1536", 1536, 384, 8}, {"ffn fc2 1536->384", 384, 1536, 8},
      {"attention 384->384", 384, 384, 4}, {"output 384->8000", 8000, 384, 8},
      {"ffn fc1 512->2048", 2048, 512, 8}, {"ffn fc2 2048->512", 512, 2048, 8},
      {"attention 512->512", 512, 512, 4}, {"output 512->8000", 8000, 512, 8}};
  std::printf("DAQ layer forward, CPU float32, %d threads, median of %d calls, microseconds\n",
              threads, runs);
  // "decompress" is the served path (decoded at load, prepacked oneDNN
  // product); "decomp torch" the same weight through LibTorch's product, as
  // served before the packing, for comparison.
  std::printf("%-20s %4s %7s %5s %10s %10s %12s %8s %12s %12s\n", "layer", "bits", "buckets",
              "rows", "lookup", "decompress", "decomp torch", "faster", "RAM lookup", "RAM decomp");
  for (const Shape& shape : shapes) {
    for (int b : bits) {
      for (int64_t n : buckets) {
        quantmt::DaqLayout layout;
        layout.in_features = shape.in;
        layout.out_features = shape.out;
        layout.block = shape.block;
        layout.buckets = n;
        layout.bits = b;
        layout.centroids = 1 << b;
        torch::manual_seed(1);
        quantmt::DaqLinear layer(layout, true);
        layer.SetCodes(torch::randn({n, layout.centroids, shape.block}),
                       torch::randint(0, layout.centroids, {shape.out, shape.in / shape.block})
                           .to(torch::kUInt8),
                       quantmt::daq::EvenBucketOffsets(shape.out, n), torch::kFloat32);
        for (int64_t m : rows) {
          auto input = torch::randn({m, shape.in});
          layer.set_kernel(quantmt::DaqKernel::kLookup);
          layer.PrepareForInference();  // as loading a model does
          const double lookup = MedianMicros(layer, input, runs);
          const int64_t lookup_bytes = layer.ResidentBytes();
          layer.set_kernel(quantmt::DaqKernel::kDecompress);  // unprepared: LibTorch
          const double torch_dense = MedianMicros(layer, input, runs);
          layer.PrepareForInference();
          const double dense = MedianMicros(layer, input, runs);
          const int64_t dense_bytes = layer.ResidentBytes();
          std::printf("%-20s %4d %7ld %5ld %10.1f %10.1f %12.1f %8s %12ld %12ld\n", shape.name, b,
                      static_cast<long>(n), static_cast<long>(m), lookup, dense, torch_dense,
                      lookup < dense ? "lookup" : "decomp", static_cast<long>(lookup_bytes),
                      static_cast<long>(dense_bytes));
        }
      }
    }
  }
  return 0;
}
