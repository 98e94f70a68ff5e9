#include "server/admission/request_validation.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"
#include "quantmt/engine/utf8.h"

namespace quantmt::server {

absl::Status ValidateMessageSize(size_t bytes, const RequestLimits& limits) {
  if (bytes <= static_cast<size_t>(limits.max_receive_message_bytes)) return absl::OkStatus();
  return absl::ResourceExhaustedError(
      absl::StrCat("the request message has ", bytes, " bytes, over the size limit of ",
                   limits.max_receive_message_bytes,
                   " (--max_receive_message_bytes): send fewer or shorter sentences per request"));
}

int TransportReceiveLimit(const RequestLimits& limits) {
  const int64_t twice = 2 * static_cast<int64_t>(limits.max_receive_message_bytes);
  return static_cast<int>(std::min<int64_t>(twice, std::numeric_limits<int>::max()));
}

absl::Status ValidateSentence(const std::string& sentence, const std::string& where,
                              const RequestLimits& limits) {
  size_t bad_offset = 0;
  if (!IsValidUtf8(sentence, &bad_offset)) {
    return absl::InvalidArgumentError(absl::StrCat(where, " is not valid UTF-8 (byte ", bad_offset,
                                                   "): send text encoded as UTF-8"));
  }
  if (static_cast<int64_t>(sentence.size()) > limits.max_sentence_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, " has ", sentence.size(), " bytes; the limit is ",
                     limits.max_sentence_bytes, ": split it into shorter sentences"));
  }
  return absl::OkStatus();
}

absl::StatusOr<TranslationOptions> ValidateOptions(const v1::TranslationOptions& options,
                                                   const RequestLimits& limits) {
  // Server policy only: defaults for fields left at 0 and the configured
  // maxima. The engine's ValidateTranslationOptions checks the ranges every
  // front end shares (beam_size >= 1, num_hypotheses <= beam_size, ...).
  TranslationOptions result;
  result.beam_size = options.beam_size() == 0 ? limits.default_beam_size : options.beam_size();
  if (result.beam_size > limits.max_beam_size) {
    return absl::InvalidArgumentError(absl::StrCat("beam_size ", options.beam_size(),
                                                   " is out of range: use 1 (greedy) to ",
                                                   limits.max_beam_size, ", or 0 for the default"));
  }
  result.num_hypotheses = options.num_hypotheses() == 0 ? 1 : options.num_hypotheses();
  result.max_length = options.max_length() == 0 ? limits.default_max_length : options.max_length();
  if (result.max_length > limits.max_length) {
    return absl::InvalidArgumentError(absl::StrCat("max_length ", options.max_length(),
                                                   " is out of range: use 1 to ", limits.max_length,
                                                   ", or 0 for the default"));
  }
  // The engine counts the tokens and refuses a longer sentence.
  result.max_input_length = limits.max_sentence_tokens;
  if (options.has_length_penalty()) result.length_penalty = options.length_penalty();
  RETURN_IF_ERROR(ValidateTranslationOptions(result));
  return result;
}

absl::StatusOr<ValidatedTranslation> ValidateTranslateRequest(const v1::TranslateRequest& request,
                                                              const RequestLimits& limits,
                                                              const std::string& default_model) {
  ValidatedTranslation result;
  result.model = request.model().empty() ? default_model : request.model();
  if (result.model.empty()) {
    return absl::NotFoundError(
        "no model named in the request and the server has no default model: "
        "load one with LoadModel");
  }
  if (request.sentences().empty()) {
    return absl::InvalidArgumentError("the request has no sentences: send at least one");
  }
  if (request.sentences_size() > limits.max_sentences) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request has ", request.sentences_size(), " sentences; the limit is ",
                     limits.max_sentences, ": split it into several requests"));
  }
  int64_t total_bytes = 0;
  for (int i = 0; i < request.sentences_size(); ++i) {
    RETURN_IF_ERROR(ValidateSentence(request.sentences(i), absl::StrCat("sentence ", i), limits));
    total_bytes += request.sentences(i).size();
  }
  if (total_bytes > limits.max_request_bytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the request has ", total_bytes, " bytes of text; the limit is ",
                     limits.max_request_bytes, ": split it into several requests"));
  }
  ASSIGN_OR_RETURN(result.options, ValidateOptions(request.options(), limits));
  result.return_scores = request.options().return_scores();
  result.sentences.assign(request.sentences().begin(), request.sentences().end());
  return result;
}

}  // namespace quantmt::server
