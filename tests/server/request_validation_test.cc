#include "server/admission/request_validation.h"

#include <gtest/gtest.h>

#include <limits>

#include "absl/strings/match.h"
#include "server/convert/status_conversion.h"

namespace quantmt::server {
namespace {

v1::TranslateRequest Request(std::vector<std::string> sentences) {
  v1::TranslateRequest request;
  for (auto& sentence : sentences) request.add_sentences(sentence);
  return request;
}

void ExpectInvalid(const v1::TranslateRequest& request, const std::string& message_part,
                   const RequestLimits& limits = {}) {
  auto result = ValidateTranslateRequest(request, limits, "de-en");
  ASSERT_FALSE(result.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(result.status())) << result.status();
  EXPECT_TRUE(absl::StrContains(result.status().message(), message_part)) << result.status();
}

TEST(RequestValidationTest, AcceptsAndAppliesDefaults) {
  auto result = ValidateTranslateRequest(Request({"Ein Hund.", "Zwei Hunde."}), {}, "de-en");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->model, "de-en");
  EXPECT_EQ(result->sentences.size(), 2u);
  EXPECT_EQ(result->options.beam_size, 4);
  EXPECT_EQ(result->options.num_hypotheses, 1);
  EXPECT_EQ(result->options.max_length, 256);
  EXPECT_EQ(result->options.max_input_length, 0);  // the model's own limit
  EXPECT_FALSE(result->return_scores);
}

TEST(RequestValidationTest, TokenLimitGoesToTheEngine) {
  RequestLimits limits;
  limits.max_sentence_tokens = 24;
  auto result = ValidateTranslateRequest(Request({"Ein Hund."}), limits, "de-en");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->options.max_input_length, 24);
}

TEST(RequestValidationTest, RefusesBadInputWithAnExplanation) {
  ExpectInvalid(Request({}), "no sentences");
  ExpectInvalid(Request({"ok", std::string("bad \xC3\x28 utf8")}), "sentence 1 is not valid UTF-8");
  ExpectInvalid(Request(std::vector<std::string>(257, "x")), "257 sentences; the limit is 256");
  ExpectInvalid(Request({std::string(5000, 'a')}), "5000 bytes; the limit is 4096");
  RequestLimits small;
  small.max_request_bytes = 10;
  ExpectInvalid(Request({"abcdef", "ghijkl"}), "12 bytes of text; the limit is 10", small);

  // The server's limits (--max_beam_size, --max_length) come first, then the
  // engine's ranges (ValidateTranslationOptions), with the proto's field names.
  auto request = Request({"Hallo."});
  request.mutable_options()->set_beam_size(17);
  ExpectInvalid(request,
                "beam_size 17 is out of range: use 1 (greedy) to 16, or 0 for the default");
  request.mutable_options()->set_beam_size(-1);
  ExpectInvalid(request, "beam_size -1 is out of range: use 1 (greedy) or more");
  request.mutable_options()->set_beam_size(2);
  request.mutable_options()->set_num_hypotheses(3);
  ExpectInvalid(request, "num_hypotheses 3 is out of range: use 1 to beam_size (2)");
  request.mutable_options()->set_num_hypotheses(-1);
  ExpectInvalid(request, "num_hypotheses -1 is out of range: use 1 to beam_size (2)");
  request.mutable_options()->set_num_hypotheses(2);
  request.mutable_options()->set_max_length(100000);
  ExpectInvalid(request, "max_length 100000 is out of range: use 1 to 512, or 0 for the default");
  request.mutable_options()->set_max_length(-5);
  ExpectInvalid(request, "max_length -5 is out of range: use 1 or more");
  request.mutable_options()->set_max_length(10);
  request.mutable_options()->set_length_penalty(-1);
  ExpectInvalid(request, "length_penalty -1 is out of range: use 0 to 10");
  request.mutable_options()->set_length_penalty(10.5f);
  ExpectInvalid(request, "length_penalty 10.5 is out of range: use 0 to 10");
  request.mutable_options()->set_length_penalty(0.6f);
  auto valid = ValidateTranslateRequest(request, {}, "de-en");
  ASSERT_TRUE(valid.ok()) << valid.status();
  EXPECT_FLOAT_EQ(valid->options.length_penalty, 0.6f);
  EXPECT_EQ(valid->options.num_hypotheses, 2);
}

TEST(RequestValidationTest, NoModelAnywhereIsNotFound) {
  auto result = ValidateTranslateRequest(Request({"Hallo."}), {}, "");
  EXPECT_TRUE(absl::IsNotFound(result.status())) << result.status();
}

TEST(RequestValidationTest, MessageSizeLimitAndTransportCap) {
  RequestLimits limits;
  limits.max_receive_message_bytes = 2048;
  EXPECT_TRUE(ValidateMessageSize(2048, limits).ok());
  absl::Status over = ValidateMessageSize(2049, limits);
  EXPECT_TRUE(absl::IsResourceExhausted(over)) << over;
  EXPECT_TRUE(absl::StrContains(over.message(), "2049 bytes, over the size limit of 2048")) << over;
  EXPECT_EQ(TransportReceiveLimit(limits), 4096);
  limits.max_receive_message_bytes = 1 << 30;  // the largest allowed: twice it overflows int
  EXPECT_EQ(TransportReceiveLimit(limits), std::numeric_limits<int>::max());
}

TEST(StatusConversionTest, KeepsCodeAndMessage) {
  grpc::Status status = ToGrpcStatus(absl::ResourceExhaustedError("queue full"));
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(status.error_message(), "queue full");
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::INVALID_ARGUMENT), "INVALID_ARGUMENT");
  EXPECT_EQ(GrpcCodeName(grpc::StatusCode::OK), "OK");
}

}  // namespace
}  // namespace quantmt::server
