// Greedy decoding throughput on the reference shape (docs/benchmarks.md):
// 6 encoder + 3 decoder layers, d_model 512, 8 heads, FFN 2048, vocabulary
// 8000 with tied embeddings, random weights, 30 source tokens, exactly 30
// generated tokens. tokens/s = batch * 30 / wall time of the whole call
// (encoder included). Prints one row per batch size, median of --runs.
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>

#include "decoding/search.h"
#include "model/int8_convert.h"
#include "model/transformer.h"

int main(int argc, char** argv) {
  CLI::App app{"quantmt greedy decoding throughput on the reference shape"};
  int threads = 2, runs = 5, length = 30;
  std::vector<int> batches = {1, 8, 32, 64};
  std::string device_name = "cpu", compute_type = "float32";
  app.add_option("--threads", threads, "CPU intra-op threads")->capture_default_str();
  app.add_option("--runs", runs, "Timed runs per batch size (median reported)")
      ->capture_default_str();
  app.add_option("--batch_sizes", batches)->delimiter(',');
  app.add_option("--length", length, "Source and generated tokens")->capture_default_str();
  app.add_option("--device", device_name, "cpu or cuda")->capture_default_str();
  bool int8_embeddings = true;
  app.add_option("--compute_type", compute_type,
                 "float32, float16, bfloat16, or int8 (CPU: dynamic INT8, quantized in memory "
                 "as quantmt-quantize does)")
      ->capture_default_str();
  app.add_option("--int8_embeddings", int8_embeddings,
                 "With int8: quantize the token table and tied output projection too")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  torch::set_num_threads(threads);
  torch::manual_seed(1234);
  quantmt::ModelConfig config;
  config.d_model = 512;
  config.encoder_layers.assign(6, {8, 2048, 0});
  config.decoder_layers.assign(3, {8, 2048, 0});
  config.source_vocab_size = config.target_vocab_size = 8000;
  auto created = quantmt::Transformer::Create(config);
  if (!created.ok()) {
    std::fprintf(stderr, "error: %s\n", std::string(created.status().message()).c_str());
    return 1;
  }
  auto model = *created;
  model->eval();
  const bool int8 = compute_type == "int8";
  if (int8) {
    quantmt::QuantizationConfig quantization;
    quantization.scheme = "int8_dynamic";
    quantization.params_json =
        int8_embeddings ? R"({"quantize_embeddings": true})" : R"({"quantize_embeddings": false})";
    auto quantized = quantmt::QuantizeTransformer(*model, quantization);
    if (!quantized.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(quantized.status().message()).c_str());
      return 1;
    }
    model = *quantized;
  }
  const torch::Device device(device_name == "cuda" ? torch::kCUDA : torch::kCPU);
  const auto dtype = compute_type == "float16"    ? torch::kFloat16
                     : compute_type == "bfloat16" ? torch::kBFloat16
                                                  : torch::kFloat32;
  model->to(device, dtype);
  quantmt::PrepareForInference(*model);

  quantmt::SearchOptions options;  // greedy, exactly `length` tokens
  options.min_length = options.max_length = length;

  // Reference figures of CTranslate2 4.8.1 (FP32 and INT8, oneDNN, 2
  // threads) on the same 2-vCPU machine kind, from the project's design notes.
  const std::map<int, double> reference =
      int8 ? std::map<int, double>{{1, 340}, {8, 1193}, {32, 4253}, {64, 5189}}
           : std::map<int, double>{{1, 233}, {8, 875}, {32, 1677}, {64, 2526}};
  std::printf("quantmt greedy decoding, reference shape, %s %s, %d threads, LibTorch %s\n",
              device_name.c_str(), compute_type.c_str(), threads, TORCH_VERSION);
  std::printf("%6s %12s %12s %12s %10s\n", "batch", "tokens/s", "ms/batch", "ms/token", "vs CT2");
  for (int batch : batches) {
    std::vector<std::vector<int64_t>> sources(batch);
    for (auto& source : sources) {
      for (int i = 0; i + 1 < length; ++i) source.push_back(4 + std::rand() % 7996);
      source.push_back(config.eos_id);
    }
    std::vector<double> seconds;
    for (int run = 0; run <= runs; ++run) {  // run 0 warms up
      const auto start = std::chrono::steady_clock::now();
      auto results = quantmt::GreedySearch(*model, sources, options, device);
      if (device.is_cuda()) torch::cuda::synchronize();
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      for (const auto& nbest : results) {
        if (nbest.empty() || static_cast<int>(nbest[0].tokens.size()) != length) {
          std::fprintf(stderr, "error: a sentence did not generate exactly %d tokens\n", length);
          return 1;
        }
      }
      if (run > 0) seconds.push_back(elapsed);
    }
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    const double tokens_per_second = batch * length / median;
    char ratio[32] = "-";
    if (reference.count(batch) && device_name == "cpu" && (int8 || compute_type == "float32")) {
      std::snprintf(ratio, sizeof(ratio), "%.2fx", tokens_per_second / reference.at(batch));
    }
    std::printf("%6d %12.0f %12.2f %12.3f %10s\n", batch, tokens_per_second, median * 1e3,
                median * 1e3 / length, ratio);
  }
  return 0;
}
