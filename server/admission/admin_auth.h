// Admin calls (LoadModel, UnloadModel) carry `authorization: Bearer <token>`.
#pragma once

#include <grpcpp/server_context.h>

#include <string>

#include "quantmt/engine/status.h"

namespace quantmt::server {

// OK if the call carries `admin_token`. Unauthenticated without the header
// (or a malformed one), PermissionDenied for a wrong token, or for any token
// when `admin_token` is empty (admin calls disabled).
absl::Status CheckAdmin(const grpc::CallbackServerContext& context,
                        const std::string& admin_token);

}  // namespace quantmt::server
