// The gRPC server: quantmt.v1 services, grpc.health.v1 (overall, per
// service and per model) and server reflection, with the configured limits,
// keepalive and optional TLS.
#pragma once

#include <grpcpp/server.h>

#include <memory>

#include "server/config/server_options.h"
#include "server/services/model_service.h"
#include "server/services/serving_state.h"
#include "server/services/translation_service.h"

namespace quantmt::server {

class GrpcServer {
 public:
  // Listens and serves; health says NOT_SERVING until state->SetReady().
  // Unavailable if the port cannot be bound; NotFound for unreadable TLS files.
  static absl::StatusOr<std::unique_ptr<GrpcServer>> Start(const ServerOptions& options,
                                                           ServingState* state);
  ~GrpcServer();

  int port() const { return port_; }

  // Stops accepting calls, lets accepted ones finish until `grace` has
  // passed, then cancels the rest. Call after state->StartDraining().
  void Shutdown(absl::Duration grace);

 private:
  GrpcServer(ServingState* state) : translation_(state), models_(state) {}

  TranslationService translation_;
  ModelService models_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  bool shut_down_ = false;
};

}  // namespace quantmt::server
