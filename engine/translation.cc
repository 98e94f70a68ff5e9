// Validation of the engine API's request options: no torch, so that every
// front end (and the server's fuzzer) links it cheaply.
#include "quantmt/engine/translation.h"

#include <string>

#include "absl/strings/str_cat.h"

namespace quantmt {

absl::Status ValidateTranslationOptions(const TranslationOptions& options) {
  // "FIELD VALUE is out of range: use ...", FIELD as TranslationOptions and
  // the gRPC API both spell it, so that front ends pass the message on.
  auto out_of_range = [](const char* field, auto value, const std::string& use) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, " ", value, " is out of range: use ", use));
  };
  // Front ends may allow fewer beams: each side of the range has its own message.
  if (options.beam_size < 1) {
    return out_of_range("beam_size", options.beam_size, "1 (greedy) or more");
  }
  if (options.beam_size > 64) return out_of_range("beam_size", options.beam_size, "at most 64");
  if (options.num_hypotheses < 1 || options.num_hypotheses > options.beam_size) {
    return out_of_range("num_hypotheses", options.num_hypotheses,
                        absl::StrCat("1 to beam_size (", options.beam_size, ")"));
  }
  if (options.max_length < 1) return out_of_range("max_length", options.max_length, "1 or more");
  if (options.min_length < 0 || options.min_length > options.max_length) {
    return out_of_range("min_length", options.min_length,
                        absl::StrCat("0 to max_length (", options.max_length, ")"));
  }
  if (options.max_input_length < 0) {
    return out_of_range("max_input_length", options.max_input_length,
                        "0 (the model's limit) or more");
  }
  if (!(options.length_penalty >= 0.0f && options.length_penalty <= 10.0f)) {
    return out_of_range("length_penalty", options.length_penalty, "0 to 10");
  }
  return absl::OkStatus();
}

}  // namespace quantmt
