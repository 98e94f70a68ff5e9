#include "server/metrics/http_endpoint.h"

#include <civetweb.h>

#include <cstring>

#include "absl/strings/str_cat.h"

namespace quantmt::server {

absl::StatusOr<std::unique_ptr<MetricsHttpEndpoint>> MetricsHttpEndpoint::Start(
    const std::string& host, int port, const Registry* registry) {
  // Idempotent; civetweb counts its initializations.
  mg_init_library(0);
  std::unique_ptr<MetricsHttpEndpoint> endpoint(new MetricsHttpEndpoint(registry));
  const std::string listening = absl::StrCat(host, ":", port);
  // Two worker threads: scrapes are rare and cheap.
  const char* options[] = {"listening_ports",    listening.c_str(), "num_threads", "2",
                           "request_timeout_ms", "10000",           nullptr};
  char error_text[256] = "";
  unsigned error_code = 0;
  mg_callbacks callbacks;
  std::memset(&callbacks, 0, sizeof(callbacks));
  mg_init_data init = {&callbacks, endpoint.get(), options};
  mg_error_data error = {&error_code, error_text, sizeof(error_text)};
  endpoint->context_ = mg_start2(&init, &error);
  if (endpoint->context_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", listening, ": ",
                                               error_text,
                                               " (pick a free port with --metrics_port)"));
  }
  mg_set_request_handler(endpoint->context_, "/metrics$", &MetricsHttpEndpoint::HandleMetrics,
                         endpoint.get());
  mg_server_port ports[1];
  if (mg_get_server_ports(endpoint->context_, 1, ports) == 1) endpoint->port_ = ports[0].port;
  return endpoint;
}

MetricsHttpEndpoint::~MetricsHttpEndpoint() {
  if (context_ != nullptr) mg_stop(context_);
}

int MetricsHttpEndpoint::HandleMetrics(mg_connection* connection, void* self) {
  const mg_request_info* request = mg_get_request_info(connection);
  if (std::strcmp(request->request_method, "GET") != 0 &&
      std::strcmp(request->request_method, "HEAD") != 0) {
    mg_send_http_error(connection, 405, "use GET /metrics");
    return 405;
  }
  const std::string body = static_cast<MetricsHttpEndpoint*>(self)->registry_->Expose();
  mg_send_http_ok(connection, "text/plain; version=0.0.4; charset=utf-8",
                  static_cast<long long>(body.size()));
  if (std::strcmp(request->request_method, "GET") == 0) {
    mg_write(connection, body.data(), body.size());
  }
  return 200;
}

}  // namespace quantmt::server
