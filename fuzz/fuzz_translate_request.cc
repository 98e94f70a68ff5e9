// Translate requests as the server receives them, through the validation
// that guards the engine (server/admission). Half the inputs are parsed as
// the wire-format message; the other half build the message field by field,
// so that text the wire parser already refuses (invalid UTF-8 in a proto3
// string) still reaches the validator, as it would from a client whose
// protobuf library does not check. Whatever is accepted must satisfy every
// limit; whatever is refused must say why with the documented code.
#include <fuzzer/FuzzedDataProvider.h>
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.h"
#include "quantmt/engine/utf8.h"
#include "server/admission/request_validation.h"

namespace {

using quantmt::server::RequestLimits;
using quantmt::server::ValidatedTranslation;

// Small limits, so that short inputs reach every bound.
RequestLimits FuzzLimits() {
  RequestLimits limits;
  limits.max_sentences = 4;
  limits.max_sentence_bytes = 64;
  limits.max_request_bytes = 160;
  limits.max_beam_size = 8;
  limits.max_length = 64;
  limits.default_beam_size = 4;
  limits.default_max_length = 32;
  return limits;
}

quantmt::v1::TranslateRequest BuildRequest(FuzzedDataProvider& input) {
  quantmt::v1::TranslateRequest request;
  request.set_model(input.ConsumeRandomLengthString(16));
  const int sentences = input.ConsumeIntegralInRange(0, 6);
  for (int i = 0; i < sentences; ++i) request.add_sentences(input.ConsumeRandomLengthString(96));
  quantmt::v1::TranslationOptions* options = request.mutable_options();
  options->set_beam_size(input.ConsumeIntegral<int32_t>());
  options->set_num_hypotheses(input.ConsumeIntegral<int32_t>());
  options->set_max_length(input.ConsumeIntegral<int32_t>());
  options->set_return_scores(input.ConsumeBool());
  if (input.ConsumeBool()) options->set_length_penalty(input.ConsumeFloatingPoint<float>());
  return request;
}

void CheckAccepted(const quantmt::v1::TranslateRequest& request, const RequestLimits& limits,
                   const std::string& default_model, const ValidatedTranslation& result) {
  FUZZ_CHECK(result.model == (request.model().empty() ? default_model : request.model()),
             "the model is the one asked for, or the default");
  FUZZ_CHECK(!result.model.empty(), "an accepted request names a model");
  FUZZ_CHECK(!result.sentences.empty() &&
                 result.sentences.size() <= static_cast<size_t>(limits.max_sentences),
             "sentence count within limits");
  FUZZ_CHECK(static_cast<int>(result.sentences.size()) == request.sentences_size(),
             "every sentence is kept");
  int64_t total = 0;
  for (int i = 0; i < request.sentences_size(); ++i) {
    const std::string& sentence = result.sentences[i];
    FUZZ_CHECK(sentence == request.sentences(i), "sentences keep their order and bytes");
    FUZZ_CHECK(quantmt::IsValidUtf8(sentence, nullptr), "accepted text is valid UTF-8");
    FUZZ_CHECK(sentence.size() <= static_cast<size_t>(limits.max_sentence_bytes),
               "sentence within the byte limit");
    total += static_cast<int64_t>(sentence.size());
  }
  FUZZ_CHECK(total <= limits.max_request_bytes, "request within the byte limit");
  const quantmt::TranslationOptions& options = result.options;
  FUZZ_CHECK(options.beam_size >= 1 && options.beam_size <= limits.max_beam_size,
             "beam_size within limits");
  FUZZ_CHECK(options.num_hypotheses >= 1 && options.num_hypotheses <= options.beam_size,
             "num_hypotheses within 1..beam_size");
  FUZZ_CHECK(options.max_length >= 1 && options.max_length <= limits.max_length,
             "max_length within limits");
  FUZZ_CHECK(options.length_penalty >= 0.0f && options.length_penalty <= 10.0f,
             "length_penalty within 0..10");
  FUZZ_CHECK(result.return_scores == request.options().return_scores(), "return_scores kept");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // A refused proto3 string logs an error per input; the fuzzer's own output
  // is what matters here.
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  const bool from_wire = input.ConsumeBool();
  const std::string default_model = input.ConsumeBool() ? "de-en" : "";
  quantmt::v1::TranslateRequest request;
  if (from_wire) {
    const std::string bytes = input.ConsumeRemainingBytesAsString();
    if (!request.ParseFromString(bytes)) return 0;
  } else {
    request = BuildRequest(input);
  }
  const RequestLimits limits = FuzzLimits();
  auto result = quantmt::server::ValidateTranslateRequest(request, limits, default_model);
  if (result.ok()) {
    CheckAccepted(request, limits, default_model, *result);
    return 0;
  }
  FUZZ_CHECK(!result.status().message().empty(), "every refusal says why");
  FUZZ_CHECK(absl::IsInvalidArgument(result.status()) || absl::IsNotFound(result.status()),
             "refusals are InvalidArgument, or NotFound for the model");
  return 0;
}
