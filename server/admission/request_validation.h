// Turns proto requests into validated engine requests. Nothing reaches the
// engine without passing through here; every refusal is InvalidArgument
// (or NotFound for the model) with a message that says what to fix.
#pragma once

#include <string>
#include <vector>

#include "quantmt/engine/engine.h"
#include "quantmt/v1/translation.pb.h"
#include "server/admission/request_limits.h"

namespace quantmt::server {

struct ValidatedTranslation {
  std::string model;  // resolved: never empty
  std::vector<std::string> sentences;
  TranslationOptions options;
  bool return_scores = false;
};

// `default_model` replaces an empty request.model ("" if the server has no
// model, which makes an empty name NotFound).
absl::StatusOr<ValidatedTranslation> ValidateTranslateRequest(const v1::TranslateRequest& request,
                                                              const RequestLimits& limits,
                                                              const std::string& default_model);

// The options alone, with the limits' defaults for fields left at 0.
absl::StatusOr<TranslationOptions> ValidateOptions(const v1::TranslationOptions& options,
                                                   const RequestLimits& limits);

// ResourceExhausted when a request message of `bytes` is over
// limits.max_receive_message_bytes.
absl::Status ValidateMessageSize(size_t bytes, const RequestLimits& limits);

// The size gRPC's transport accepts: twice our limit, so that messages up to
// that are refused (and counted) by ValidateMessageSize, while the memory a
// message may take stays bounded.
int TransportReceiveLimit(const RequestLimits& limits);

// Checks one sentence: UTF-8 and size. `where` names it in the message,
// e.g. "sentence 3".
absl::Status ValidateSentence(const std::string& sentence, const std::string& where,
                              const RequestLimits& limits);

}  // namespace quantmt::server
