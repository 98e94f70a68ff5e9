// Greedy decoding throughput on the reference shape (docs/benchmarks.md):
// 6 encoder + 3 decoder layers, d_model 512, 8 heads, FFN 2048, vocabulary
// 8000 with tied embeddings, random weights, 30 source tokens, exactly 30
// generated tokens. tokens/s = batch * 30 / wall time of the whole call
// (encoder included). Prints one row per batch size, median of --runs.
// With --model, the same measurement on a model directory (any precision)
// instead of random weights. On the CPU, the batch is split into equal parts
// decoded at once by --replicas threads sharing the model, each with
// threads / replicas intra-op threads: what the server's CPU replicas do with
// a large request (idle replicas split it). By default the server's automatic
// plan for --threads cores (2: 2 replicas x 1 thread).
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "decoding/cuda_batch_decoder.h"
#include "decoding/search.h"
#include "model/dequantize.h"
#include "model/int8_convert.h"
#include "model/model_io.h"
#include "model/transformer.h"
#include "op_profile.h"
#include "replica_pool.h"
#include "serving/allocator_tuning.h"
#include "serving/cpu_threads.h"

namespace {

// The reference shape of the design notes, with random weights.
absl::StatusOr<std::shared_ptr<quantmt::Transformer>> ReferenceModel() {
  torch::manual_seed(1234);
  quantmt::ModelConfig config;
  config.d_model = 512;
  config.encoder_layers.assign(6, {8, 2048, 0});
  config.decoder_layers.assign(3, {8, 2048, 0});
  config.source_vocab_size = config.target_vocab_size = 8000;
  return quantmt::Transformer::Create(config);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"quantmt greedy decoding throughput on the reference shape"};
  int threads = 2, runs = 5, length = 30, replicas = 0;
  std::vector<int> batches = {1, 8, 32, 64};
  std::string device_name = "cpu", compute_type = "float32", model_dir, json_path;
  app.add_option("--threads", threads, "CPU intra-op threads")->capture_default_str();
  app.add_option("--replicas", replicas,
                 "CPU: decoding threads sharing the model, each taking an equal part of every "
                 "batch on threads / replicas intra-op threads (0: the server's automatic plan "
                 "for --threads cores)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  app.add_option("--runs", runs, "Timed runs per batch size (median reported)")
      ->capture_default_str();
  app.add_option("--batch_sizes", batches)->delimiter(',');
  app.add_option("--length", length, "Source and generated tokens")->capture_default_str();
  app.add_option("--device", device_name, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  bool int8_embeddings = true, prepare = true, profile = false, dequantize = true;
  app.add_option("--compute_type", compute_type,
                 "float32, float16, bfloat16, or int8 (CPU: dynamic INT8, quantized in memory "
                 "as quantmt-quantize does)")
      ->capture_default_str();
  app.add_option("--int8_embeddings", int8_embeddings,
                 "With int8: quantize the token table and tied output projection too")
      ->capture_default_str();
  app.add_option("--model", model_dir, "A model directory instead of the reference shape");
  app.add_option("--dequantize", dequantize,
                 "CUDA: run an int8 or DAQ model as its float twin, as the server does "
                 "(false: the compressed layers, dequantizing activations and codes on the way)")
      ->capture_default_str();
  app.add_option("--json", json_path, "Also write the results as JSON here");
  std::string decoder_name = "eager";
  app.add_option("--decoder", decoder_name,
                 "eager (StepDecoder), graphs (the CUDA graph decoder the server runs) or static "
                 "(its static-shape step launched op by op)")
      ->check(CLI::IsMember({"eager", "graphs", "static"}))
      ->capture_default_str();
  app.add_option("--prepare", prepare,
                 "Prepare layers for inference as the Translator does (CPU float32: oneDNN "
                 "matmul; false keeps LibTorch/OpenBLAS, for comparison)")
      ->capture_default_str();
  app.add_option(
         "--profile", profile,
         "After the timings, run each batch size once more under LibTorch's op profiler "
         "and print where the time goes (QUANTMT_PROFILE_SHAPES=1: one row per op and input "
         "shapes)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  torch::set_num_threads(threads);
  quantmt::KeepFreedMemoryForReuse();  // as the serving engine does
  auto created = model_dir.empty() ? ReferenceModel() : quantmt::LoadTransformer(model_dir);
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
  const quantmt::ModelConfig config = model->config();  // a copy: `model` may be replaced
  const torch::Device device(device_name == "cuda" ? torch::kCUDA : torch::kCPU);
  if (device.is_cuda() && !torch::cuda::is_available()) {
    std::fprintf(stderr, "error: --device cuda, but this LibTorch has no usable CUDA device\n");
    return 1;
  }
  const auto dtype = compute_type == "float16"    ? torch::kFloat16
                     : compute_type == "bfloat16" ? torch::kBFloat16
                                                  : torch::kFloat32;
  if (device.is_cuda() && dequantize && config.quantization.scheme != "none") {
    auto dense = quantmt::DequantizeTransformer(*model);
    if (!dense.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(dense.status().message()).c_str());
      return 1;
    }
    model = *dense;
  }
  model->to(device, dtype);
  if (prepare) quantmt::PrepareForInference(*model);

  quantmt::SearchOptions options;  // greedy, exactly `length` tokens
  options.min_length = options.max_length = length;
  std::unique_ptr<quantmt::BatchDecoder> graph_decoder;
  if (decoder_name != "eager") {
    quantmt::CudaBatchDecoderOptions graph_options;
    graph_options.capture_graphs = decoder_name == "graphs";
    graph_options.max_rows = *std::max_element(batches.begin(), batches.end());
    auto created_decoder = quantmt::CreateCudaBatchDecoder(*model, graph_options);
    if (!created_decoder.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(created_decoder.status().message()).c_str());
      return 1;
    }
    graph_decoder = std::move(*created_decoder);
  }
  if (replicas == 0) {
    replicas =
        device.is_cuda() || graph_decoder ? 1 : quantmt::PlanCpuThreads(threads, 0, 0).replicas;
  }
  if (replicas > 1 && (device.is_cuda() || graph_decoder || threads % replicas != 0)) {
    std::fprintf(stderr,
                 "error: --replicas needs the CPU eager decoder and --threads a multiple of it\n");
    return 1;
  }
  std::unique_ptr<quantmt::bench::ReplicaPool> replica_pool;
  if (replicas > 1) {
    replica_pool = std::make_unique<quantmt::bench::ReplicaPool>(replicas, threads / replicas);
  }
  // Replica i decodes sentences [size * i / replicas, size * (i + 1) / replicas).
  auto decode_on_replicas = [&](const std::vector<std::vector<int64_t>>& sources) {
    const size_t size = sources.size();
    std::vector<quantmt::SearchResults> parts(replicas);
    replica_pool->Run([&](int i) {
      std::vector<std::vector<int64_t>> part(sources.begin() + size * i / replicas,
                                             sources.begin() + size * (i + 1) / replicas);
      if (!part.empty()) parts[i] = quantmt::GreedySearch(*model, part, options, device);
    });
    quantmt::SearchResults results;
    for (auto& part : parts) {
      for (auto& nbest : part) results.push_back(std::move(nbest));
    }
    return results;
  };
  auto decode = [&](const std::vector<std::vector<int64_t>>& sources) {
    if (replica_pool) return decode_on_replicas(sources);
    if (!graph_decoder) return quantmt::GreedySearch(*model, sources, options, device);
    // The whole batch joins at once and steps until every sentence is done.
    std::vector<quantmt::DecodeInput> inputs;
    for (size_t i = 0; i < sources.size(); ++i) {
      inputs.push_back({static_cast<int64_t>(i), sources[i], options});
    }
    graph_decoder->Add(inputs);
    quantmt::SearchResults results(sources.size());
    while (!graph_decoder->empty()) {
      for (auto& output : graph_decoder->Step()) results[output.id] = std::move(output.hypotheses);
    }
    return results;
  };

  const std::string shape = model_dir.empty() ? "reference shape" : model_dir;
  const int per_replica = threads / replicas;
  const std::string thread_text =
      std::to_string(replicas) + (replicas > 1 ? " replicas x " : " replica x ") +
      std::to_string(per_replica) + (per_replica > 1 ? " threads" : " thread");
  std::printf("quantmt greedy decoding, %s, %s %s, %s decoder, %s, LibTorch %s\n", shape.c_str(),
              device_name.c_str(), compute_type.c_str(), decoder_name.c_str(), thread_text.c_str(),
              TORCH_VERSION);
  if (model->config().quantization.scheme != config.quantization.scheme) {
    std::printf("weights: the %s checkpoint run as its float twin (--dequantize)\n",
                config.quantization.scheme.c_str());
  }
  // No peer column: a ratio to figures measured on another machine says
  // little; docs/benchmarks.md (Method) runs the peer side by side.
  nlohmann::json report = {{"model", shape},
                           {"device", device_name},
                           {"compute_type", compute_type},
                           {"threads", threads},
                           {"replicas", replicas},
                           {"length", length},
                           {"results", nlohmann::json::array()}};
  // Roofline of the reference shape on this machine kind (design notes): 71
  // MFLOP per generated token against the 2-thread compute ceiling, and at
  // small batches the weights streamed from memory once per step.
  const double compute_ceiling = int8 ? 25384 : 6341;
  const double memory_bound_per_row = int8 ? 4700 : 1178;
  std::printf("%6s %12s %12s %12s %10s\n", "batch", "tokens/s", "ms/batch", "ms/token", "roofline");
  for (int batch : batches) {
    std::vector<std::vector<int64_t>> sources(batch);
    for (auto& source : sources) {
      for (int i = 0; i + 1 < length; ++i) {
        source.push_back(4 + std::rand() % (config.source_vocab_size - 4));
      }
      source.push_back(config.eos_id);
    }
    std::vector<double> seconds;
    for (int run = 0; run <= runs; ++run) {  // run 0 warms up
      const auto start = std::chrono::steady_clock::now();
      auto results = decode(sources);
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
    char roofline[32] = "-";
    if (device_name == "cpu" && (int8 || compute_type == "float32") && model_dir.empty()) {
      const double ceiling = std::min(compute_ceiling, memory_bound_per_row * batch);
      std::snprintf(roofline, sizeof(roofline), "%.0f%%", 100.0 * tokens_per_second / ceiling);
    }
    std::printf("%6d %12.0f %12.2f %12.3f %10s\n", batch, tokens_per_second, median * 1e3,
                median * 1e3 / length, roofline);
    report["results"].push_back({{"batch_size", batch},
                                 {"tokens_per_second", tokens_per_second},
                                 {"seconds_per_batch", median}});
  }
  if (!json_path.empty()) std::ofstream(json_path) << report.dump(2) << "\n";
  if (profile) {
    for (int batch : batches) {
      std::vector<std::vector<int64_t>> sources(batch, std::vector<int64_t>(length, 5));
      for (auto& source : sources) source.back() = config.eos_id;
      const bool available = quantmt::bench::PrintOpProfile(
          [&] { quantmt::GreedySearch(*model, sources, options, device); }, 15,
          "batch " + std::to_string(batch));
      if (!available) {
        std::fprintf(stderr, "this LibTorch has no op profiler\n");
        break;
      }
    }
  }
  return 0;
}
