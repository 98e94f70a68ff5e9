#include "server/metrics/server_metrics.h"

#include <unistd.h>

#include <fstream>
#include <map>

#include "absl/strings/match.h"

namespace quantmt::server {
namespace {

// Registration of our own fixed names cannot fail; a failure is a
// programming error caught by every test that builds ServerMetrics.
template <typename T>
T* Must(absl::StatusOr<T*> family) {
  if (!family.ok()) {
    std::fprintf(stderr, "metrics registration: %s\n", family.status().ToString().c_str());
    std::abort();
  }
  return *family;
}

}  // namespace

int64_t ProcessResidentBytes() {
  std::ifstream statm("/proc/self/statm");
  int64_t size_pages = 0, resident_pages = 0;
  if (!(statm >> size_pages >> resident_pages)) return 0;
  return resident_pages * static_cast<int64_t>(sysconf(_SC_PAGESIZE));
}

ServerMetrics::ServerMetrics() {
  // 1 ms .. ~65 s: a single greedy sentence to a long beam-search batch.
  const auto latency_buckets = ExponentialBuckets(0.001, 2, 17);
  requests_ = Must(registry_.AddCounter("quantmt_requests_total",
                                        "RPCs answered, by method, model and gRPC status code.",
                                        {"rpc", "model", "code"}));
  request_duration_ = Must(registry_.AddHistogram(
      "quantmt_request_duration_seconds", "Time from receiving an RPC to answering it.",
      {"rpc", "model"}, latency_buckets));
  queue_duration_ = Must(registry_.AddHistogram(
      "quantmt_queue_duration_seconds",
      "Time a translation request waited before its first sentence started decoding.", {"model"},
      latency_buckets));
  compute_duration_ = Must(registry_.AddHistogram(
      "quantmt_compute_duration_seconds",
      "Time from a request's first sentence starting to decode to its last one finishing.",
      {"model"}, latency_buckets));
  batch_sentences_ = Must(registry_.AddHistogram(
      "quantmt_batch_sentences", "Rows (sentences, beams included) in each batched step.",
      {"model"}, ExponentialBuckets(1, 2, 11)));
  batch_tokens_ = Must(registry_.AddHistogram("quantmt_batch_tokens",
                                              "Token positions in each batched step.", {"model"},
                                              ExponentialBuckets(1, 2, 17)));
  source_tokens_ = Must(registry_.AddCounter(
      "quantmt_source_tokens_total", "Source tokens of finished requests (end-of-sentence included).",
      {"model"}));
  generated_tokens_ = Must(registry_.AddCounter("quantmt_generated_tokens_total",
                                                "Tokens generated for finished requests.",
                                                {"model"}));
  queued_sentences_ = Must(registry_.AddGauge(
      "quantmt_queued_sentences", "Sentences waiting to start decoding.", {"model"}));
  running_sentences_ = Must(registry_.AddGauge("quantmt_running_sentences",
                                               "Sentences decoding now.", {"model"}));
  inflight_ = Must(registry_.AddGauge("quantmt_inflight_requests",
                                      "Translation RPCs accepted and not yet answered.", {"model"}));
  weights_bytes_ = Must(registry_.AddGauge("quantmt_model_weights_bytes",
                                           "Bytes the model's weights occupy in memory.",
                                           {"model", "precision"}));
  model_loaded_ = Must(registry_.AddGauge(
      "quantmt_model_loaded", "1 for the model's current state (loading, ready, unloading, failed).",
      {"model", "state"}));
  resident_memory_ = Must(registry_.AddGauge("process_resident_memory_bytes",
                                             "Resident memory size in bytes.", {}));
  gpu_memory_ = Must(registry_.AddGauge(
      "quantmt_gpu_memory_bytes",
      "Bytes of model weights and decoder cache held on each GPU (present only with CUDA models).",
      {"device"}));
  registry_.AddCollector([this] { resident_memory_->Set({}, ProcessResidentBytes()); });
}

void ServerMetrics::WatchEngine(const Engine* engine) {
  registry_.AddCollector([this, engine] { CollectEngineGauges(*engine); });
}

void ServerMetrics::CollectEngineGauges(const Engine& engine) {
  const auto models = engine.ListModels();
  // Series of unloaded models disappear: rebuild the model gauges each scrape.
  queued_sentences_->Clear();
  running_sentences_->Clear();
  weights_bytes_->Clear();
  model_loaded_->Clear();
  gpu_memory_->Clear();
  std::map<std::string, double> gpu_bytes;
  for (const ModelStatus& model : models) {
    queued_sentences_->Set({model.name}, model.queued_sentences);
    running_sentences_->Set({model.name}, model.running_sentences);
    weights_bytes_->Set({model.name, model.info.quantization}, model.weights_bytes);
    for (ModelState state :
         {ModelState::kLoading, ModelState::kReady, ModelState::kUnloading, ModelState::kFailed}) {
      model_loaded_->Set({model.name, ModelStateName(state)}, model.state == state ? 1 : 0);
    }
    if (absl::StartsWith(model.info.device, "cuda")) {
      gpu_bytes[model.info.device] += model.weights_bytes + model.cache_bytes;
    }
  }
  for (const auto& [device, bytes] : gpu_bytes) gpu_memory_->Set({device}, bytes);
}

void ServerMetrics::RecordRequest(const std::string& rpc, const std::string& model,
                                  const std::string& code, double seconds) {
  requests_->Increment({rpc, model, code});
  request_duration_->Observe({rpc, model}, seconds);
}

void ServerMetrics::AddInflight(const std::string& model, int delta) {
  inflight_->Add({model}, delta);
}

void ServerMetrics::OnBatch(const std::string& model, int sentences, int tokens) {
  batch_sentences_->Observe({model}, sentences);
  batch_tokens_->Observe({model}, tokens);
}

void ServerMetrics::OnRequestDone(const std::string& model, const absl::Status& status,
                                  const RequestTimings& timings) {
  if (!status.ok()) return;
  queue_duration_->Observe({model}, absl::ToDoubleSeconds(timings.queued));
  compute_duration_->Observe({model}, absl::ToDoubleSeconds(timings.compute));
  source_tokens_->Increment({model}, timings.source_tokens);
  generated_tokens_->Increment({model}, timings.generated_tokens);
}

}  // namespace quantmt::server
