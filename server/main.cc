// quantmt-server: serves translation models over gRPC with Prometheus
// metrics. Thin: parse the settings, load the models, serve until SIGTERM or
// SIGINT, then drain.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>

#include "server/config/server_options.h"
#include "server/grpc_server.h"
#include "server/metrics/http_endpoint.h"
#include "server/services/model_service.h"

namespace {

using namespace quantmt::server;

int Fail(const absl::Status& status) {
  std::fprintf(stderr, "quantmt-server: %s\n", std::string(status.message()).c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"quantmt-server: translation over gRPC, metrics at /metrics"};
  ServerOptions options;
  AddServerFlags(app, &options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ConfigError& e) {
    std::fprintf(stderr, "quantmt-server: %s\n",
                 ConfigFileError(app.get_config_ptr()->as<std::string>(), e.what()).c_str());
    return 2;
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (auto valid = ValidateServerOptions(options); !valid.ok()) return Fail(valid);

  // Signals go to the thread that waits for them below, not to gRPC's or
  // the engine's threads (which inherit this mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ServerMetrics metrics;
  quantmt::EngineOptions engine_options;
  engine_options.observer = &metrics;
  std::unique_ptr<quantmt::Engine> engine = quantmt::Engine::Create(engine_options);
  metrics.WatchEngine(engine.get());

  ModelDefaults defaults;
  defaults.model_root = options.model_root;
  defaults.runtime.device =
      options.device == "cuda" ? quantmt::DeviceKind::kCuda : quantmt::DeviceKind::kCpu;
  defaults.runtime.num_threads = options.threads;
  defaults.runtime.cuda_graphs = options.cuda_graphs;
  defaults.replicas = options.replicas;
  defaults.scheduler.max_queued_sentences = options.max_queued_sentences;
  defaults.scheduler.max_batch_sentences = options.max_batch_sentences;
  defaults.scheduler.max_batch_tokens = options.max_batch_tokens;
  defaults.scheduler.max_batch_wait = absl::Milliseconds(options.max_batch_wait_ms);
  ServingState state(engine.get(), &metrics, options.limits, defaults, options.data_dir,
                     options.admin_token);

  std::unique_ptr<MetricsHttpEndpoint> metrics_endpoint;
  if (options.metrics_port >= 0) {
    auto started =
        MetricsHttpEndpoint::Start(options.host, options.metrics_port, &metrics.registry());
    if (!started.ok()) return Fail(started.status());
    metrics_endpoint = *std::move(started);
    std::fprintf(stderr, "quantmt-server: metrics on http://%s:%d/metrics\n", options.host.c_str(),
                 metrics_endpoint->port());
  }
  auto server = GrpcServer::Start(options, &state);
  if (!server.ok()) return Fail(server.status());
  std::fprintf(stderr, "quantmt-server: gRPC on %s:%d, loading %zu model(s)\n",
               options.host.c_str(), (*server)->port(), options.models.size());

  for (const std::string& entry : options.models) {
    const ModelEntry model = ParseModelEntry(entry);
    auto spec = MakeModelSpec(defaults, model.name, model.directory, 0, 0, "");
    if (!spec.ok()) return Fail(spec.status());
    if (auto loaded = engine->LoadModel(*spec); !loaded.ok()) return Fail(loaded);
    state.ModelLoaded(model.name);
  }
  state.SetReady();
  std::fprintf(stderr, "quantmt-server: ready (default model: %s)\n",
               state.default_model().empty() ? "none" : state.default_model().c_str());

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::fprintf(stderr, "quantmt-server: %s: draining for up to %d s\n",
               signal_number == SIGTERM ? "SIGTERM" : "SIGINT", options.shutdown_grace_s);
  const absl::Time deadline = absl::Now() + absl::Seconds(options.shutdown_grace_s);
  state.StartDraining();
  // The engine drains first, with the gRPC server still answering: calls
  // that arrive meanwhile are refused with UNAVAILABLE (which clients
  // retry), where a gRPC server already shutting down would cancel them.
  engine->Shutdown(std::max(absl::ZeroDuration(), deadline - absl::Now()));
  (*server)->Shutdown(std::max(absl::ZeroDuration(), deadline - absl::Now()));
  std::fprintf(stderr, "quantmt-server: stopped\n");
  return 0;
}
