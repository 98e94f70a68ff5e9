// The server's metrics (names documented in docs/metrics.md): request
// outcomes recorded by the services, batch and token figures from the
// engine's observer, and gauges read from the engine and /proc at scrape
// time.
#pragma once

#include <string>

#include "quantmt/engine/engine.h"
#include "server/metrics/registry.h"

namespace quantmt::server {

class ServerMetrics : public EngineObserver {
 public:
  ServerMetrics();

  // Reads model gauges from `engine` at each scrape. Call once, before the
  // first scrape; `engine` must outlive this object's last Expose().
  void WatchEngine(const Engine* engine);

  // One finished RPC. `code` is the gRPC code name, e.g. "OK", "NOT_FOUND".
  void RecordRequest(const std::string& rpc, const std::string& model, const std::string& code,
                     double seconds);
  // In-flight requests per model, +1 when accepted, -1 when answered.
  void AddInflight(const std::string& model, int delta);

  // EngineObserver.
  void OnBatch(const std::string& model, int sentences, int tokens) override;
  void OnRequestDone(const std::string& model, const absl::Status& status,
                     const RequestTimings& timings) override;

  Registry& registry() { return registry_; }
  std::string Expose() const { return registry_.Expose(); }

 private:
  void CollectEngineGauges(const Engine& engine);

  Registry registry_;
  CounterFamily* requests_;
  HistogramFamily* request_duration_;
  HistogramFamily* queue_duration_;
  HistogramFamily* compute_duration_;
  HistogramFamily* batch_sentences_;
  HistogramFamily* batch_tokens_;
  CounterFamily* source_tokens_;
  CounterFamily* generated_tokens_;
  GaugeFamily* queued_sentences_;
  GaugeFamily* running_sentences_;
  GaugeFamily* inflight_;
  GaugeFamily* weights_bytes_;
  GaugeFamily* model_loaded_;
  GaugeFamily* resident_memory_;
  GaugeFamily* gpu_memory_;
};

// Resident set size of this process from /proc/self/statm; 0 if unreadable.
int64_t ProcessResidentBytes();

}  // namespace quantmt::server
