// quantmt-health-probe: asks a server's grpc.health.v1 service whether it
// serves, for container health checks (Docker HEALTHCHECK, exec probes).
// Exit status 0: SERVING; 1: anything else, with the reason on stderr.
#include <grpcpp/grpcpp.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "grpc/health/v1/health.grpc.pb.h"

namespace {

// The server's own QUANTMT_PORT, so that a container that moves the port
// needs no second setting for its health check.
std::string DefaultAddress() {
  const char* port = std::getenv("QUANTMT_PORT");
  return std::string("127.0.0.1:") + (port != nullptr && *port != '\0' ? port : "50051");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"quantmt-health-probe: exit 0 when the server's health service says SERVING"};
  std::string address = DefaultAddress();
  std::string service;
  int timeout_ms = 3000;
  app.add_option("--address", address, "host:port of the gRPC server")->capture_default_str();
  app.add_option("--service", service, "Service or model name to ask about (empty: the server)");
  app.add_option("--timeout_ms", timeout_ms, "Give up after this long")
      ->check(CLI::Range(1, 600000))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto channel = grpc::CreateChannel(address, grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(timeout_ms));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  grpc::health::v1::HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    std::fprintf(stderr, "quantmt-health-probe: %s: %s\n", address.c_str(),
                 status.error_message().c_str());
    return 1;
  }
  const std::string state =
      grpc::health::v1::HealthCheckResponse::ServingStatus_Name(response.status());
  if (response.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
    std::fprintf(stderr, "quantmt-health-probe: %s \"%s\": %s\n", address.c_str(), service.c_str(),
                 state.c_str());
    return 1;
  }
  return 0;
}
