#include "client/lib/connection.h"

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/status/status.h"

namespace quantmt::client {

void AddConnectionFlags(CLI::App& app, ConnectionOptions* options) {
  app.add_option("-a,--address", options->address, "Server address HOST:PORT")
      ->envname("QUANTMT_ADDRESS")
      ->capture_default_str();
  app.add_flag("--tls", options->tls, "Connect with TLS");
  app.add_option("--ca_cert", options->ca_cert, "PEM file of the CA that signed the server's cert");
  app.add_option("--token", options->admin_token, "Admin token for load/unload")
      ->envname("QUANTMT_ADMIN_TOKEN");
  app.add_option("--timeout", options->timeout_s, "Seconds per call")->capture_default_str();
}

std::shared_ptr<grpc::Channel> OpenChannel(const ConnectionOptions& options,
                                           const std::string& command) {
  std::shared_ptr<grpc::ChannelCredentials> credentials = grpc::InsecureChannelCredentials();
  if (options.tls || !options.ca_cert.empty()) {
    grpc::SslCredentialsOptions ssl;
    if (!options.ca_cert.empty()) {
      std::ifstream in(options.ca_cert);
      if (!in) {
        std::cerr << "quantmt " << command << ": cannot read --ca_cert " << options.ca_cert << "\n";
        return nullptr;
      }
      std::stringstream pem;
      pem << in.rdbuf();
      ssl.pem_root_certs = pem.str();
    }
    credentials = grpc::SslCredentials(ssl);
  }
  grpc::ChannelArguments arguments;
  arguments.SetMaxReceiveMessageSize(64 << 20);
  return grpc::CreateCustomChannel(options.address, credentials, arguments);
}

void PrepareContext(const ConnectionOptions& options, bool admin, grpc::ClientContext* context) {
  context->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::microseconds(static_cast<int64_t>(options.timeout_s * 1e6)));
  if (admin && !options.admin_token.empty()) {
    context->AddMetadata("authorization", "Bearer " + options.admin_token);
  }
}

std::string Describe(const grpc::Status& status) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code())) + ": " +
         status.error_message();
}

}  // namespace quantmt::client
