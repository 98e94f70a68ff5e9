// Serving behaviour under a mixed stream: short and long requests arrive at
// a fixed rate (or as a Poisson process), one sentence each unless
// --sentences says more, through the Engine. Prints, for continuous batching
// on and off (static batching), the latency of the short requests (p50,
// p99), of the long ones (p50), and the total throughput in generated tokens
// per second.
//
// Model: the reference shape with random weights (6 encoder + 3 decoder
// layers, d_model 512, FFN 2048, vocabulary 8000), or --model_dir. Output
// lengths are fixed (min = max decoding length) so both modes do the same
// work whatever the weights.
#include <sys/resource.h>
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "model/int8_convert.h"
#include "model/model_io.h"
#include "quantmt/eval/percentile.h"
#include "serving/engine_impl.h"
#include "serving/loaded_model.h"

namespace {

struct Workload {
  int requests = 120;
  int sentences = 1;  // per request
  double rate = 6.0;  // requests per second
  bool poisson = false;
  double long_fraction = 0.2;
  int short_source = 10, short_target = 10;
  int long_source = 60, long_target = 120;
  int beam_size = 1;  // every request's
};

struct Arrival {
  double at_seconds = 0;
  bool is_long = false;
  std::vector<int> source;
};

std::vector<Arrival> MakeArrivals(const Workload& w, int vocab, int eos) {
  std::mt19937 random(42);
  std::exponential_distribution<double> gap(w.rate);
  std::uniform_real_distribution<double> coin(0, 1);
  std::vector<Arrival> arrivals(w.requests);
  double t = 0;
  for (Arrival& a : arrivals) {
    a.at_seconds = t;
    t += w.poisson ? gap(random) : 1.0 / w.rate;
    a.is_long = coin(random) < w.long_fraction;
    const int length = a.is_long ? w.long_source : w.short_source;
    for (int i = 0; i + 1 < length; ++i) a.source.push_back(4 + random() % (vocab - 4));
    a.source.push_back(eos);
  }
  return arrivals;
}

struct RunResult {
  std::vector<double> short_ms, long_ms;
  double seconds = 0;
  int64_t generated = 0;
  std::map<std::string, int> failures;  // by message
};

RunResult Run(quantmt::Engine& engine, const std::vector<Arrival>& arrivals, const Workload& w) {
  using Clock = std::chrono::steady_clock;
  RunResult result;
  std::mutex mu;
  std::condition_variable cv;
  size_t finished = 0;
  const auto start = Clock::now();
  for (const Arrival& arrival : arrivals) {
    std::this_thread::sleep_until(start + std::chrono::duration<double>(arrival.at_seconds));
    quantmt::TranslationRequest request;
    request.source_ids.assign(w.sentences, arrival.source);
    request.options.beam_size = w.beam_size;
    const int target = arrival.is_long ? w.long_target : w.short_target;
    request.options.min_length = request.options.max_length = target;
    const auto submitted = Clock::now();
    engine.Translate(
        "model", std::move(request),
        [&, submitted, target, is_long = arrival.is_long](quantmt::RequestOutcome outcome) {
          const double ms =
              std::chrono::duration<double, std::milli>(Clock::now() - submitted).count();
          std::lock_guard<std::mutex> lock(mu);
          if (outcome.results.ok()) {
            (is_long ? result.long_ms : result.short_ms).push_back(ms);
            result.generated += int64_t{target} * w.sentences;
          } else {
            ++result.failures[std::string(outcome.results.status().message())];
          }
          ++finished;
          cv.notify_all();
        });
  }
  std::unique_lock<std::mutex> lock(mu);
  cv.wait(lock, [&] { return finished == arrivals.size(); });
  result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  return result;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"quantmt serving latency: continuous vs static batching on a mixed stream"};
  Workload w;
  int threads = 0, replicas = 0, max_batch = 64, warmup_runs = 0;
  double max_wait_ms = 5;
  std::string model_dir;
  bool int8 = false, cuda_graphs = true;
  std::string device = "cpu", compute_type = "auto";
  app.add_option("--requests", w.requests, "Requests")->capture_default_str();
  app.add_option("--sentences", w.sentences, "Sentences per request")
      ->capture_default_str()
      ->check(CLI::Range(1, 1024));
  app.add_option("--rate", w.rate, "Arrivals per second")->capture_default_str();
  app.add_flag("--poisson", w.poisson, "Poisson arrivals instead of a fixed rate");
  app.add_option("--long_fraction", w.long_fraction, "Share of long sentences")
      ->capture_default_str();
  app.add_option("--short_source", w.short_source)->capture_default_str();
  app.add_option("--short_target", w.short_target)->capture_default_str();
  app.add_option("--long_source", w.long_source)->capture_default_str();
  app.add_option("--long_target", w.long_target)->capture_default_str();
  app.add_option("--beam_size", w.beam_size, "Beam search width of every request (1: greedy)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  app.add_option("--threads", threads, "Intra-op threads per replica (0: the server's plan)")
      ->capture_default_str();
  app.add_option("--replicas", replicas, "Replicas (0: the server's plan)")->capture_default_str();
  app.add_option("--max_batch_sentences", max_batch)->capture_default_str();
  app.add_option("--max_wait_ms", max_wait_ms)->capture_default_str();
  app.add_option("--warmup_runs", warmup_runs,
                 "Whole workloads run before the measured one (a warm server: CUDA graphs of "
                 "every shape captured)")
      ->capture_default_str();
  app.add_option("--model_dir", model_dir, "A model directory instead of random weights");
  app.add_flag("--int8", int8, "Random weights quantized to dynamic INT8 (as the decode bench)");
  app.add_option("--device", device, "cpu or cuda")
      ->check(CLI::IsMember({"cpu", "cuda"}))
      ->capture_default_str();
  app.add_option("--compute_type", compute_type, "auto, float32, float16 or bfloat16")
      ->capture_default_str();
  app.add_option("--cuda_graphs", cuda_graphs,
                 "CUDA float models: greedy steps on CUDA graphs (false: op by op)")
      ->capture_default_str();
  std::vector<std::string> modes = {"continuous", "static"};
  app.add_option("--modes", modes, "Batching modes to run, in order")->delimiter(',');
  CLI11_PARSE(app, argc, argv);
  if (int8 && !model_dir.empty()) {
    std::fprintf(stderr, "error: --int8 quantizes random weights; a model directory has its own\n");
    return 1;
  }

  quantmt::ModelConfig config;
  if (!model_dir.empty()) {
    auto read = quantmt::ReadModelConfig(model_dir);
    if (!read.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(read.status().message()).c_str());
      return 1;
    }
    config = *read;
  }
  if (model_dir.empty()) {
    config.d_model = 512;
    config.encoder_layers.assign(6, {8, 2048, 0});
    config.decoder_layers.assign(3, {8, 2048, 0});
    config.source_vocab_size = config.target_vocab_size = 8000;
    config.max_source_positions = config.max_target_positions = 256;
  }
  quantmt::ModelRepository::Loader loader =
      [&](const quantmt::ModelSpec& spec) -> absl::StatusOr<std::shared_ptr<quantmt::LoadedModel>> {
    if (!model_dir.empty()) return quantmt::LoadModelDirectory(model_dir, spec.runtime);
    torch::manual_seed(1234);
    ASSIGN_OR_RETURN(auto model, quantmt::Transformer::Create(config));
    if (int8) {
      quantmt::QuantizationConfig quantization;
      quantization.scheme = "int8_dynamic";
      quantization.params_json = R"({"quantize_embeddings": true})";
      ASSIGN_OR_RETURN(model, quantmt::QuantizeTransformer(*model, quantization));
    }
    return quantmt::PlaceModel(model, spec.runtime, "random reference shape");
  };

  std::printf(
      "quantmt serving latency: %d requests of %d sentence(s) at %.1f/s (%s), %.0f%% long; "
      "short %d->%d tokens, long %d->%d; beam %d; %s; %s %s%s; LibTorch %s\n",
      w.requests, w.sentences, w.rate, w.poisson ? "Poisson" : "fixed rate", w.long_fraction * 100,
      w.short_source, w.short_target, w.long_source, w.long_target, w.beam_size,
      model_dir.empty() ? (int8 ? "random INT8" : "random weights") : model_dir.c_str(),
      device.c_str(), compute_type.c_str(),
      device == "cuda" ? (cuda_graphs ? ", CUDA graphs" : ", op by op") : "", TORCH_VERSION);
  bool plan_printed = false;
  for (const std::string& mode : modes) {
    const bool continuous = mode == "continuous";
    auto engine = quantmt::CreateEngine({}, loader);
    quantmt::ModelSpec spec;
    spec.name = "model";
    spec.model_dir = model_dir;
    spec.replicas = replicas;
    spec.runtime.num_threads = threads;
    spec.runtime.device = device == "cuda" ? quantmt::DeviceKind::kCuda : quantmt::DeviceKind::kCpu;
    spec.runtime.compute_type = compute_type;
    spec.runtime.cuda_graphs = cuda_graphs;
    spec.scheduler.continuous_batching = continuous;
    spec.scheduler.max_batch_sentences = max_batch;
    spec.scheduler.max_batch_wait = absl::Milliseconds(max_wait_ms);
    if (auto status = engine->LoadModel(spec); !status.ok()) {
      std::fprintf(stderr, "error: %s\n", std::string(status.message()).c_str());
      return 1;
    }
    if (!plan_printed) {
      auto status = engine->GetModel("model");
      if (status.ok()) {
        std::printf("plan: %d replica(s) x %d intra-op thread(s)\n", status->replicas,
                    status->threads_per_replica);
      }
      plan_printed = true;
      std::printf("%-11s %14s %14s %14s %12s %8s\n", "batching", "short p50 ms", "short p99 ms",
                  "long p50 ms", "tokens/s", "failed");
    }
    const int vocab = config.source_vocab_size;
    const auto arrivals = MakeArrivals(w, vocab, config.eos_id);
    // Warm-up: one request of each kind.
    Workload warm = w;
    warm.requests = 2;
    Run(*engine, MakeArrivals(warm, vocab, config.eos_id), warm);
    for (int i = 0; i < warmup_runs; ++i) Run(*engine, arrivals, w);
    const RunResult r = Run(*engine, arrivals, w);
    int failed = 0;
    for (const auto& [message, count] : r.failures) failed += count;
    std::printf("%-11s %14.0f %14.0f %14.0f %12.0f %8d\n", continuous ? "continuous" : "static",
                quantmt::eval::PercentileOfUnsorted(r.short_ms, 0.5),
                quantmt::eval::PercentileOfUnsorted(r.short_ms, 0.99),
                quantmt::eval::PercentileOfUnsorted(r.long_ms, 0.5), r.generated / r.seconds,
                failed);
    for (const auto& [message, count] : r.failures) {
      std::printf("  %d failed: %s\n", count, message.c_str());
    }
  }
  // Replicas keep what their batches freed for reuse (allocator_tuning.h):
  // the peak is what a server running this load holds.
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::printf("peak RSS: %ld MB (the whole process: weights, caches, buffers)\n",
              usage.ru_maxrss / 1024);
  return 0;
}
