// The one mapping from engine errors (absl::Status) to gRPC statuses.
#pragma once

#include <grpcpp/support/status.h>

#include <string>

#include "quantmt/engine/status.h"

namespace quantmt::server {

// absl and gRPC share the canonical code numbering; the message is kept.
grpc::Status ToGrpcStatus(const absl::Status& status);

// "OK", "INVALID_ARGUMENT", ...: the label value of quantmt_requests_total.
std::string GrpcCodeName(grpc::StatusCode code);

}  // namespace quantmt::server
