// The metrics HTTP endpoint: GET /metrics answers with the registry in the
// Prometheus text format (civetweb, on its own port).
#pragma once

#include <memory>
#include <string>

#include "quantmt/engine/status.h"
#include "server/metrics/registry.h"

struct mg_context;
struct mg_connection;

namespace quantmt::server {

class MetricsHttpEndpoint {
 public:
  // Listens on `host`:`port` (port 0: any free port; see port()). `registry`
  // must outlive the endpoint. Unavailable if the port cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpEndpoint>> Start(const std::string& host,
                                                                    int port,
                                                                    const Registry* registry);
  ~MetricsHttpEndpoint();  // stops serving; waits for running requests

  int port() const { return port_; }

 private:
  MetricsHttpEndpoint(const Registry* registry) : registry_(registry) {}
  static int HandleMetrics(mg_connection* connection, void* self);

  const Registry* registry_;
  mg_context* context_ = nullptr;
  int port_ = 0;
};

}  // namespace quantmt::server
