// Every RPC of a real quantmt-server process (default model, loopback),
// called with the generated C++ client; then each error the API promises,
// provoked and checked by code, message and metrics.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "quantmt/v1/models.grpc.pb.h"
#include "quantmt/v1/translation.grpc.pb.h"
#include "server_process.h"

namespace quantmt::testing {
namespace {

using grpc::StatusCode;

constexpr char kToken[] = "e2e-admin-token";

class ServerE2eTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const char* source = std::getenv("QUANTMT_SOURCE_DIR");
    ASSERT_NE(source, nullptr) << "QUANTMT_SOURCE_DIR must point at the source tree";
    const std::string root = source;
    server_ = new ServerProcess(
        QUANTMT_SERVER_BIN,
        {"--model_root=" + root + "/models", "--models=default", "--threads=1",
         "--admin_token=" + std::string(kToken), "--data_dir=" + root + "/tests/fixtures/eval-data",
         "--max_receive_message_bytes=65536", "--max_queued_sentences=8", "--max_sentences=32",
         "--default_beam_size=1"});
    ASSERT_TRUE(server_->ok()) << server_->log();
    channel_ = new std::shared_ptr<grpc::Channel>(
        grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials()));
  }
  static void TearDownTestSuite() {
    delete channel_;
    // Sanitizer builds: a race, overflow or UB in the server fails the suite.
    if (server_ != nullptr) {
      EXPECT_EQ(server_->SanitizerReport(), "");
    }
    delete server_;
  }

  std::unique_ptr<v1::TranslationService::Stub> Translation() {
    return v1::TranslationService::NewStub(*channel_);
  }
  std::unique_ptr<v1::ModelService::Stub> Models() { return v1::ModelService::NewStub(*channel_); }

  static void WithDeadline(grpc::ClientContext* context, double seconds = 60) {
    context->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int>(seconds * 1000)));
  }

  grpc::Status Translate(const v1::TranslateRequest& request, v1::TranslateResponse* response,
                         double seconds = 60) {
    grpc::ClientContext context;
    WithDeadline(&context, seconds);
    return Translation()->Translate(&context, request, response);
  }

  static double Metric(const std::string& series) {
    return SampleValue(HttpGet(server_->metrics_port(), "/metrics"), series);
  }
  // Waits until the default model has nothing queued or decoding: a request
  // whose client gave up (deadline) leaves the queue at the scheduler's next
  // step, not at once, and would otherwise fill the small test queue.
  static void WaitUntilIdle() {
    for (int i = 0; i < 1000; ++i) {
      if (Metric("quantmt_queued_sentences{model=\"default\"}") == 0 &&
          Metric("quantmt_running_sentences{model=\"default\"}") == 0) {
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ADD_FAILURE() << "the default model did not become idle in 10 s";
  }
  static std::string RequestsSeries(const std::string& rpc, const std::string& model,
                                    const std::string& code) {
    return "quantmt_requests_total{rpc=\"" + rpc + "\",model=\"" + model + "\",code=\"" + code +
           "\"}";
  }

  static ServerProcess* server_;
  static std::shared_ptr<grpc::Channel>* channel_;
};

ServerProcess* ServerE2eTest::server_ = nullptr;
std::shared_ptr<grpc::Channel>* ServerE2eTest::channel_ = nullptr;

v1::TranslateRequest Sentences(std::vector<std::string> sentences, const std::string& model = "") {
  v1::TranslateRequest request;
  request.set_model(model);
  for (auto& sentence : sentences) request.add_sentences(sentence);
  return request;
}

TEST_F(ServerE2eTest, TranslateUsesTheDefaultModel) {
  const double before = Metric(RequestsSeries("Translate", "default", "OK"));
  v1::TranslateResponse response;
  auto request = Sentences({"Ein kleiner Hund rennt über die Wiese.", "Danke."});
  request.mutable_options()->set_beam_size(2);
  request.mutable_options()->set_num_hypotheses(2);
  request.mutable_options()->set_return_scores(true);
  grpc::Status status = Translate(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.model(), "default");
  ASSERT_EQ(response.translations_size(), 2);
  const v1::Translation& first = response.translations(0);
  ASSERT_EQ(first.hypotheses_size(), 2);
  EXPECT_TRUE(absl::StrContains(first.hypotheses(0).text(), "dog")) << first.hypotheses(0).text();
  EXPECT_GE(first.hypotheses(0).score(), first.hypotheses(1).score());
  EXPECT_LT(first.hypotheses(0).log_prob(), 0);
  EXPECT_GT(first.source_tokens(), 5);
  EXPECT_GT(first.generated_tokens(), 3);
  EXPECT_EQ(Metric(RequestsSeries("Translate", "default", "OK")), before + 1);
}

TEST_F(ServerE2eTest, TranslateStreamAnswersEachRequestById) {
  grpc::ClientContext context;
  WithDeadline(&context);
  auto stream = Translation()->TranslateStream(&context);
  v1::TranslateStreamRequest first;
  first.set_id(7);
  first.set_stream_tokens(true);
  *first.mutable_request() = Sentences({"Ein Hund.", "Eine Katze schläft."});
  first.mutable_request()->mutable_options()->set_beam_size(1);
  v1::TranslateStreamRequest second;
  second.set_id(8);
  *second.mutable_request() = Sentences({"Guten Morgen."}, "no-such-model");
  v1::TranslateStreamRequest third;  // not UTF-8: unparseable, answered as id 0
  third.set_id(9);
  *third.mutable_request() = Sentences({"b\xC3\x28se"});
  ASSERT_TRUE(stream->Write(first));
  ASSERT_TRUE(stream->Write(second));
  ASSERT_TRUE(stream->Write(third));
  ASSERT_TRUE(stream->WritesDone());
  std::map<uint64_t, int> sentences, tokens;
  bool done7 = false;
  std::string error8, error0;
  v1::TranslateStreamResponse response;
  while (stream->Read(&response)) {
    if (response.has_token()) ++tokens[response.id()];
    if (response.has_sentence()) {
      ++sentences[response.id()];
      EXPECT_FALSE(response.sentence().translation().hypotheses(0).text().empty());
    }
    if (response.has_done()) done7 = response.id() == 7;
    if (response.has_error() && response.id() == 8) {
      EXPECT_EQ(response.error().code(), StatusCode::NOT_FOUND);
      error8 = response.error().message();
    }
    if (response.has_error() && response.id() == 0) {
      EXPECT_EQ(response.error().code(), StatusCode::INVALID_ARGUMENT);
      error0 = response.error().message();
    }
  }
  grpc::Status status = stream->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_TRUE(done7);
  EXPECT_EQ(sentences[7], 2);
  EXPECT_GT(tokens[7], 0);  // asked for token updates
  EXPECT_EQ(tokens[8], 0);
  EXPECT_TRUE(absl::StrContains(error8, "no-such-model")) << error8;
  EXPECT_TRUE(absl::StrContains(error0, "UTF-8")) << error0;
}

TEST_F(ServerE2eTest, BenchmarkStreamsProgressThenResult) {
  grpc::ClientContext context;
  WithDeadline(&context, 120);
  v1::BenchmarkRequest request;
  request.add_batch_sizes(1);
  request.add_batch_sizes(4);
  request.set_iterations(2);
  request.mutable_options()->set_max_length(16);
  auto reader = Translation()->Benchmark(&context, request);
  int progress = 0;
  v1::BenchmarkResult result;
  v1::BenchmarkResponse response;
  while (reader->Read(&response)) {
    if (response.has_progress()) ++progress;
    if (response.has_result()) result = response.result();
  }
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(progress, 4);
  EXPECT_EQ(result.model(), "default");
  EXPECT_FALSE(result.precision().empty());
  EXPECT_GT(result.weights_bytes(), 1000000);
  EXPECT_GT(result.process_resident_memory_bytes(), result.weights_bytes());
  ASSERT_EQ(result.batches_size(), 2);
  for (const auto& batch : result.batches()) {
    EXPECT_EQ(batch.requests(), 2);
    EXPECT_GT(batch.generated_tokens(), 0);
    EXPECT_GT(batch.generated_tokens_per_second(), 0);
    EXPECT_GT(batch.latency().p50_seconds(), 0);
    EXPECT_LE(batch.latency().p50_seconds(), batch.latency().max_seconds());
  }
}

TEST_F(ServerE2eTest, EvaluateInlineAndNamedTestSets) {
  grpc::ClientContext context;
  WithDeadline(&context, 120);
  v1::EvaluateRequest request;
  v1::TestSet* inline_set = request.add_test_sets();
  inline_set->set_domain("mine");
  inline_set->set_name("two");
  inline_set->add_sources("Ein Hund rennt.");
  inline_set->add_references("A dog is running.");
  inline_set->add_sources("Danke schön.");
  inline_set->add_references("Thank you very much.");
  request.add_data_sets("animals");  // tests/fixtures/eval-data/animals/test.{de,en}
  auto reader = Translation()->Evaluate(&context, request);
  int progress = 0;
  v1::EvaluateResult result;
  v1::EvaluateResponse response;
  while (reader->Read(&response)) {
    if (response.has_progress()) ++progress;
    if (response.has_result()) result = response.result();
  }
  grpc::Status status = reader->Finish();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_GE(progress, 2);
  ASSERT_EQ(result.scores_size(), 2);
  EXPECT_EQ(result.scores(0).domain(), "mine");
  EXPECT_EQ(result.scores(0).lines(), 2);
  EXPECT_EQ(result.scores(1).domain(), "animals");
  EXPECT_EQ(result.scores(1).name(), "test");
  EXPECT_GT(result.scores(1).bleu(),
            20);  // the default model knows animals (see evaluate_cli_test)
  EXPECT_GT(result.scores(1).chrf(), 40);
  EXPECT_EQ(result.bleu_signature(), "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
  EXPECT_TRUE(absl::StartsWith(result.chrf_signature(), "nrefs:1|case:mixed|eff:yes|nc:6|nw:0"));

  grpc::ClientContext unknown_context;
  WithDeadline(&unknown_context);
  v1::EvaluateRequest unknown;
  unknown.add_data_sets("../../etc");
  auto unknown_reader = Translation()->Evaluate(&unknown_context, unknown);
  while (unknown_reader->Read(&response)) {
  }
  status = unknown_reader->Finish();
  EXPECT_EQ(status.error_code(), StatusCode::NOT_FOUND);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "animals/test")) << status.error_message();
}

TEST_F(ServerE2eTest, ModelsListLoadTranslateUnload) {
  grpc::ClientContext list_context;
  v1::ListModelsResponse list;
  ASSERT_TRUE(Models()->ListModels(&list_context, {}, &list).ok());
  ASSERT_EQ(list.models_size(), 1);
  EXPECT_EQ(list.models(0).name(), "default");
  EXPECT_EQ(list.models(0).state(), "ready");
  EXPECT_TRUE(list.models(0).is_default());
  EXPECT_EQ(list.models(0).source_language(), "de");

  grpc::ClientContext load_context;
  WithDeadline(&load_context, 120);
  load_context.AddMetadata("authorization", std::string("Bearer ") + kToken);
  v1::LoadModelRequest load;
  load.set_name("second");
  load.set_directory("default");
  v1::LoadModelResponse loaded;
  grpc::Status status = Models()->LoadModel(&load_context, load, &loaded);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(loaded.model().name(), "second");
  EXPECT_EQ(loaded.model().state(), "ready");
  EXPECT_FALSE(loaded.model().is_default());

  v1::TranslateResponse response;
  status = Translate(Sentences({"Ein Hund."}, "second"), &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.model(), "second");

  grpc::ClientContext unload_context;
  WithDeadline(&unload_context);
  unload_context.AddMetadata("authorization", std::string("Bearer ") + kToken);
  v1::UnloadModelRequest unload;
  unload.set_name("second");
  v1::UnloadModelResponse unloaded;
  status = Models()->UnloadModel(&unload_context, unload, &unloaded);
  ASSERT_TRUE(status.ok()) << status.error_message();
  status = Translate(Sentences({"Ein Hund."}, "second"), &response);
  EXPECT_EQ(status.error_code(), StatusCode::NOT_FOUND) << status.error_message();
}

TEST_F(ServerE2eTest, HealthOverallPerServiceAndPerModel) {
  auto health = grpc::health::v1::Health::NewStub(*channel_);
  for (const std::string service : {"", "quantmt.v1.TranslationService", "default"}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    ASSERT_TRUE(health->Check(&context, request, &response).ok()) << service;
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("no-such-model");
  grpc::health::v1::HealthCheckResponse response;
  EXPECT_EQ(health->Check(&context, request, &response).error_code(), StatusCode::NOT_FOUND);
}

// Each error the API promises: its code, a message that says what to fix,
// a metric that counts it, and a server that keeps serving.
TEST_F(ServerE2eTest, BadInputGetsClearErrorsAndIsCounted) {
  struct Case {
    const char* what;
    v1::TranslateRequest request;
    StatusCode code;
    const char* message_part;
    const char* model_label;
  };
  auto with_options = [](v1::TranslateRequest request, int beam, int nbest) {
    request.mutable_options()->set_beam_size(beam);
    request.mutable_options()->set_num_hypotheses(nbest);
    return request;
  };
  std::vector<Case> cases = {
      {"empty", Sentences({}), StatusCode::INVALID_ARGUMENT, "no sentences", ""},
      {"bad utf-8", Sentences({"gut", "b\xC3\x28se"}), StatusCode::INVALID_ARGUMENT, "valid UTF-8",
       ""},
      {"too many sentences", Sentences(std::vector<std::string>(33, "Hallo.")),
       StatusCode::INVALID_ARGUMENT, "33 sentences; the limit is 32", ""},
      {"sentence too long", Sentences({std::string(5000, 'a')}), StatusCode::INVALID_ARGUMENT,
       "the limit is 4096", ""},
      {"too many tokens for the model",
       Sentences({std::string(2000, 'x') + " " + std::string(1500, 'y')}),
       StatusCode::INVALID_ARGUMENT, "", "default"},
      {"bad beam", with_options(Sentences({"Hallo."}), 99, 1), StatusCode::INVALID_ARGUMENT,
       "beam_size 99", ""},
      {"bad n-best", with_options(Sentences({"Hallo."}), 2, 5), StatusCode::INVALID_ARGUMENT,
       "num_hypotheses 5", ""},
      {"unknown model", Sentences({"Hallo."}, "nope"), StatusCode::NOT_FOUND, "nope", "unknown"},
      {"message over the size limit",
       Sentences(std::vector<std::string>(20, std::string(4000, 'a'))),
       StatusCode::RESOURCE_EXHAUSTED, "over the size limit of 65536", ""},
  };
  for (const Case& c : cases) {
    const std::string series =
        c.model_label == nullptr
            ? ""
            : RequestsSeries("Translate", c.model_label,
                             absl::StatusCodeToString(static_cast<absl::StatusCode>(c.code)));
    const double before = series.empty() ? 0 : Metric(series);
    v1::TranslateResponse response;
    grpc::Status status = Translate(c.request, &response);
    EXPECT_EQ(status.error_code(), c.code) << c.what << ": " << status.error_message();
    EXPECT_TRUE(absl::StrContains(status.error_message(), c.message_part))
        << c.what << ": " << status.error_message();
    EXPECT_FALSE(status.error_message().empty()) << c.what;
    if (!series.empty()) {
      EXPECT_EQ(Metric(series), before + 1) << c.what << " " << series;
    }
  }

  // Admin calls need the token.
  v1::UnloadModelRequest unload;
  unload.set_name("default");
  v1::UnloadModelResponse unloaded;
  grpc::ClientContext no_token;
  grpc::Status status = Models()->UnloadModel(&no_token, unload, &unloaded);
  EXPECT_EQ(status.error_code(), StatusCode::UNAUTHENTICATED);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "authorization")) << status.error_message();
  grpc::ClientContext wrong_token;
  wrong_token.AddMetadata("authorization", "Bearer guess");
  status = Models()->UnloadModel(&wrong_token, unload, &unloaded);
  EXPECT_EQ(status.error_code(), StatusCode::PERMISSION_DENIED);
  grpc::ClientContext escape;
  escape.AddMetadata("authorization", std::string("Bearer ") + kToken);
  v1::LoadModelRequest load;
  load.set_name("evil");
  load.set_directory("../../etc");
  v1::LoadModelResponse loaded;
  status = Models()->LoadModel(&escape, load, &loaded);
  EXPECT_EQ(status.error_code(), StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(absl::StrContains(status.error_message(), "inside the model root"));

  // A deadline that cannot be met.
  v1::TranslateResponse response;
  auto slow = Sentences(std::vector<std::string>(8,
                                                 "Die Regierung hat am Dienstag neue Maßnahmen "
                                                 "angekündigt, um die Energiepreise zu senken."));
  slow.mutable_options()->set_beam_size(4);
  status = Translate(slow, &response, 0.005);
  EXPECT_EQ(status.error_code(), StatusCode::DEADLINE_EXCEEDED) << status.error_message();

  // A client that cancels.
  WaitUntilIdle();
  {
    grpc::ClientContext context;
    WithDeadline(&context);
    std::thread canceller([&context] {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      context.TryCancel();
    });
    status = Translation()->Translate(&context, slow, &response);
    canceller.join();
    EXPECT_EQ(status.error_code(), StatusCode::CANCELLED) << status.error_message();
  }

  // More sentences at once than the queue holds (8): some are refused.
  WaitUntilIdle();
  {
    const double before = Metric(RequestsSeries("Translate", "default", "RESOURCE_EXHAUSTED"));
    auto stub = Translation();
    constexpr int kCalls = 12;
    std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
    std::vector<v1::TranslateResponse> responses(kCalls);
    std::vector<grpc::Status> statuses(kCalls);
    std::atomic<int> pending{kCalls};
    auto request = Sentences({"Ein Hund.", "Eine Katze.", "Ein Vogel singt.", "Danke."});
    for (int i = 0; i < kCalls; ++i) {
      contexts.push_back(std::make_unique<grpc::ClientContext>());
      WithDeadline(contexts.back().get());
      stub->async()->Translate(contexts.back().get(), &request, &responses[i],
                               [&, i](grpc::Status s) {
                                 statuses[i] = s;
                                 --pending;
                               });
    }
    while (pending > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    int exhausted = 0;
    for (const grpc::Status& s : statuses) {
      EXPECT_TRUE(s.ok() || s.error_code() == StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
      if (s.error_code() == StatusCode::RESOURCE_EXHAUSTED) ++exhausted;
    }
    EXPECT_GT(exhausted, 0);
    EXPECT_EQ(Metric(RequestsSeries("Translate", "default", "RESOURCE_EXHAUSTED")),
              before + exhausted);
  }

  // Still serving.
  status = Translate(Sentences({"Ein Hund."}), &response);
  EXPECT_TRUE(status.ok()) << status.error_message();
}

}  // namespace
}  // namespace quantmt::testing
