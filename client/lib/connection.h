// How the CLI and the load tester reach a server: address, TLS, admin
// token, per-call timeout.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

namespace CLI {
class App;
}

namespace quantmt::client {

struct ConnectionOptions {
  std::string address = "localhost:50051";
  bool tls = false;
  std::string ca_cert;      // PEM file; empty: the system roots
  std::string admin_token;  // for LoadModel/UnloadModel
  double timeout_s = 600;   // per call
};

// --address, --tls, --ca_cert, --token, --timeout (with QUANTMT_* variables).
void AddConnectionFlags(CLI::App& app, ConnectionOptions* options);

// A channel for `options`, or nullptr after printing "quantmt COMMAND: why"
// on stderr (the CA file cannot be read).
std::shared_ptr<grpc::Channel> OpenChannel(const ConnectionOptions& options,
                                           const std::string& command);

// A stub of `Service` (e.g. v1::TranslationService) on a new channel, or
// nullptr as OpenChannel.
template <typename Service>
std::unique_ptr<typename Service::Stub> Connect(const ConnectionOptions& options,
                                                const std::string& command) {
  std::shared_ptr<grpc::Channel> channel = OpenChannel(options, command);
  return channel ? Service::NewStub(channel) : nullptr;
}

// Sets the deadline (and the admin token when `admin`).
void PrepareContext(const ConnectionOptions& options, bool admin, grpc::ClientContext* context);

// "NOT_FOUND: no model named ...": a status as the CLI prints it.
std::string Describe(const grpc::Status& status);

}  // namespace quantmt::client
