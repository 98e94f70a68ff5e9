#include "server/admission/admin_auth.h"

#include "absl/strings/match.h"

namespace quantmt::server {
namespace {

// Compares in time independent of where the strings differ, so a caller
// cannot find the token byte by byte from response times.
bool ConstantTimeEquals(std::string_view a, std::string_view b) {
  unsigned char difference = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) difference |= a[i] ^ b[i % (b.empty() ? 1 : b.size())];
  return difference == 0 && !b.empty();
}

}  // namespace

absl::Status CheckAdmin(const grpc::CallbackServerContext& context,
                        const std::string& admin_token) {
  const auto& metadata = context.client_metadata();
  auto header = metadata.find("authorization");
  if (header == metadata.end()) {
    return absl::UnauthenticatedError(
        "this is an admin call: send the metadata \"authorization: Bearer <admin token>\"");
  }
  const std::string_view value(header->second.data(), header->second.size());
  constexpr std::string_view kBearer = "Bearer ";
  if (!absl::StartsWith(value, kBearer)) {
    return absl::UnauthenticatedError(
        "the authorization metadata must be \"Bearer <admin token>\"");
  }
  if (admin_token.empty()) {
    return absl::PermissionDeniedError(
        "admin calls are disabled on this server: start it with --admin_token");
  }
  if (!ConstantTimeEquals(value.substr(kBearer.size()), admin_token)) {
    return absl::PermissionDeniedError("the admin token is wrong");
  }
  return absl::OkStatus();
}

}  // namespace quantmt::server
