// What every service shares: the engine, metrics, limits and the server's
// lifecycle (draining, default model, per-model health).
#pragma once

#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/status.h>

#include <atomic>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "quantmt/engine/engine.h"
#include "quantmt/engine/mutex.h"
#include "server/admission/request_limits.h"
#include "server/metrics/server_metrics.h"

namespace quantmt::server {

// Settings for models loaded by LoadModel (and at start).
struct ModelDefaults {
  std::string model_root = "models";
  RuntimeOptions runtime;
  int replicas = 0;  // 0: the engine decides
  SchedulerOptions scheduler;
};

class ServingState {
 public:
  ServingState(Engine* engine, ServerMetrics* metrics, RequestLimits limits,
               ModelDefaults model_defaults, std::string data_dir, std::string admin_token)
      : engine_(engine),
        metrics_(metrics),
        limits_(limits),
        model_defaults_(std::move(model_defaults)),
        data_dir_(std::move(data_dir)),
        admin_token_(std::move(admin_token)) {}

  Engine& engine() const { return *engine_; }
  ServerMetrics& metrics() const { return *metrics_; }
  const RequestLimits& limits() const { return limits_; }
  const ModelDefaults& model_defaults() const { return model_defaults_; }
  const std::string& data_dir() const { return data_dir_; }
  const std::string& admin_token() const { return admin_token_; }

  // Not thread-safe; call before SetReady().
  void set_health(grpc::HealthCheckServiceInterface* health) { health_ = health; }

  // The model an empty request.model means: the first one loaded that is
  // still loaded.
  std::string default_model() const;
  // Bookkeeping after a load or unload: default model and health status.
  void ModelLoaded(const std::string& name);
  void ModelUnloaded(const std::string& name);

  // Until SetReady (models loaded at start) and after StartDraining every
  // new call is refused with UNAVAILABLE; health follows.
  void SetReady();
  // After StartDraining every new call is refused with UNAVAILABLE and
  // health reports NOT_SERVING.
  void StartDraining();
  bool draining() const { return draining_.load(); }
  // UNAVAILABLE while starting or draining, else OK.
  grpc::Status CheckAccepting() const;

  // The metrics label of a model name from a request: the name when it is a
  // loaded model, else "unknown" ("" stays "": the call named none), so that
  // clients cannot create series at will.
  std::string MetricLabel(const std::string& model) const;

  // Counts one answered RPC (requests_total and request_duration_seconds)
  // under MetricLabel(model).
  void Record(const char* rpc, const std::string& model, const grpc::Status& status,
              absl::Time start) const;

  // Benchmark and Evaluate run one thread each; at most this many at once.
  bool TryStartJob();
  void JobDone();

 private:
  Engine* engine_;
  ServerMetrics* metrics_;
  const RequestLimits limits_;
  const ModelDefaults model_defaults_;
  const std::string data_dir_, admin_token_;
  grpc::HealthCheckServiceInterface* health_ = nullptr;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::atomic<int> running_jobs_{0};
  static constexpr int kMaxJobs = 2;

  mutable Mutex mutex_;
  std::vector<std::string> loaded_ ABSL_GUARDED_BY(mutex_);  // in load order
};

}  // namespace quantmt::server
