// quantmt's serving engine: named models, each behind a batching scheduler
// that many threads feed at once.
//
// Plain C++: no torch, protobuf or gRPC types. The server (and any other
// front end) talks to models only through this header.
//
//   auto engine = quantmt::Engine::Create({});
//   ModelSpec spec; spec.name = "de-en"; spec.model_dir = "models/default";
//   if (auto s = engine->LoadModel(spec); !s.ok()) ...
//   TranslationRequest request;
//   request.sentences = {"Ein Hund rennt."};
//   engine->Translate("de-en", std::move(request), [](RequestOutcome outcome) { ... });
//
// Errors (absl::Status codes, relied on by the server's gRPC mapping):
//   InvalidArgument    bad request: invalid UTF-8, too many tokens, bad options
//   NotFound           no model of that name
//   ResourceExhausted  the model's queue is full (refused at once)
//   DeadlineExceeded   the deadline passed before the request finished
//   Cancelled          the request's CancellationToken was cancelled
//   Unavailable        the model is loading/unloading, or the engine is shutting down
//   Internal           a kernel failed (e.g. device out of memory after splitting)
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "quantmt/engine/status.h"
#include "quantmt/engine/translation.h"

namespace quantmt {

// Shared between a caller and the engine; Cancel() may be called from any
// thread at any time. A cancelled request stops using compute at the next
// decoding step and completes with Cancelled.
class CancellationToken {
 public:
  void Cancel() { cancelled_.store(true, std::memory_order_relaxed); }
  bool cancelled() const { return cancelled_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> cancelled_{false};
};

// How one model's requests are queued and batched.
struct SchedulerOptions {
  // Sentences waiting (not yet decoding) before new requests are refused
  // with ResourceExhausted.
  int max_queued_sentences = 1024;
  // A running batch holds at most this many sentences (beams count as
  // sentences) and this many source tokens, padding included.
  int max_batch_sentences = 64;
  int max_batch_tokens = 4096;
  // How long the scheduler waits for more requests before starting a batch
  // that is not full. Zero: start at once.
  absl::Duration max_batch_wait = absl::Milliseconds(2);
  // New sentences join a running decode between steps (true), or a batch
  // runs to completion before the next one starts (false: static batching,
  // kept for comparison).
  bool continuous_batching = true;
  // Bound on decoder cache memory (self- and cross-attention keys/values) per
  // replica; a batch that would exceed it is split (a sentence that alone
  // exceeds it still runs, alone). 0: 1 GiB on CPU, 2 GiB on CUDA.
  int64_t max_cache_bytes = 0;
};

struct ModelSpec {
  std::string name;       // the name requests use, e.g. "de-en-int8"
  std::string model_dir;  // a model directory (config.json, weights, tokenizer)
  // Device and compute type. On CPU, runtime.num_threads is the intra-op
  // threads of EACH replica (0: hardware threads / replicas).
  RuntimeOptions runtime;
  // Workers decoding in parallel, each with its own running batch, sharing
  // one copy of the weights; idle replicas split large requests. 0:
  // automatic; on CPU one replica of one thread per hardware thread,
  // because decoder steps are too small to use many threads well (measured
  // on 2 and 16 cores: serving/cpu_threads.h); on CUDA 1.
  int replicas = 0;
  SchedulerOptions scheduler;
};

enum class ModelState { kLoading, kReady, kUnloading, kFailed };
const char* ModelStateName(ModelState state);  // "loading", "ready", ...

struct ModelStatus {
  std::string name;
  ModelState state = ModelState::kLoading;
  ModelInfo info;  // precision, device, parameters, weights file size
  int replicas = 0;
  int threads_per_replica = 0;  // CPU intra-op threads of each replica
  int64_t weights_bytes = 0;    // bytes the weights occupy in memory
  int64_t cache_bytes = 0;      // decoder cache in use now
  int queued_sentences = 0;
  int running_sentences = 0;
  std::string last_error;  // of the last failed load, if any
};

// One step of streamed output: the best hypothesis of one sentence grew by
// a token (greedy), or its best prefix changed (beam; `tokens` is then the
// whole prefix).
struct TokenEvent {
  int sentence_index = 0;      // index into TranslationRequest::sentences
  std::vector<int> token_ids;  // prefix so far, without BOS
  std::string text;            // the prefix detokenized
  bool finished = false;       // this sentence is done (its final result follows)
};

struct TranslationRequest {
  std::vector<std::string> sentences;
  // Pre-tokenized sources, used instead of `sentences` when not empty: token
  // ids of the model's source vocabulary, each source ending with
  // end-of-sentence (an empty source translates to an empty hypothesis).
  // Results then carry token ids, and text only if the model has a
  // tokenizer. For tests, benchmarks and clients that tokenize themselves.
  std::vector<std::vector<int>> source_ids;
  TranslationOptions options;
  absl::Time deadline = absl::InfiniteFuture();
  std::shared_ptr<CancellationToken> cancellation;  // optional
  // Optional; called on an engine thread, never concurrently for one request.
  // Must not block.
  std::function<void(const TokenEvent&)> on_token;
};

// Timings of a finished request, for metrics and logs.
struct RequestTimings {
  absl::Duration queued;   // submitted -> first sentence started decoding
  absl::Duration compute;  // first sentence started -> last sentence finished
  int source_tokens = 0;
  int generated_tokens = 0;
};

struct RequestOutcome {
  absl::StatusOr<std::vector<TranslationResult>> results;  // one per sentence, in order
  RequestTimings timings;
};

using TranslationDone = std::function<void(RequestOutcome outcome)>;

// Observes every batch step and request; the server turns these into
// metrics. Called on engine threads; implementations must be thread-safe and
// must not block.
class EngineObserver {
 public:
  virtual ~EngineObserver() = default;
  // After every encoder pass (sentences joining a batch: `sentences` rows,
  // `tokens` = rows x padded source length) and every decoding step
  // (`sentences` rows, beams included; `tokens` = source plus generated
  // tokens the rows attend to, padding excluded).
  virtual void OnBatch(const std::string& model, int sentences, int tokens) = 0;
  // Once per Translate call, just before its `done` callback, whatever the
  // outcome (refusals at submission included; `timings` then zero).
  virtual void OnRequestDone(const std::string& model, const absl::Status& status,
                             const RequestTimings& timings) = 0;
};

struct EngineOptions {
  EngineObserver* observer = nullptr;  // not owned; may be null
};

class Engine {
 public:
  static std::unique_ptr<Engine> Create(const EngineOptions& options);
  virtual ~Engine() = default;

  // Loads (or replaces) the model `spec.name`. Replacing is atomic: requests
  // keep going to the old version until the new one is ready; if the new one
  // fails to load, the old one keeps serving and the error is returned.
  virtual absl::Status LoadModel(const ModelSpec& spec) = 0;
  // Stops admitting requests for `name`, finishes those already accepted,
  // then frees the model. NotFound if there is no such model.
  virtual absl::Status UnloadModel(const std::string& name) = 0;
  virtual std::vector<ModelStatus> ListModels() const = 0;
  virtual absl::StatusOr<ModelStatus> GetModel(const std::string& name) const = 0;

  // Asynchronous: `done` is called exactly once, on an engine thread (or on
  // the calling thread when the request is refused at once: unknown model,
  // invalid input, full queue).
  virtual void Translate(const std::string& model, TranslationRequest request,
                         TranslationDone done) = 0;
  // Blocking convenience over Translate.
  RequestOutcome TranslateSync(const std::string& model, TranslationRequest request);

  // Refuses new requests (Unavailable), lets accepted ones finish until
  // `grace` has passed, then cancels the rest. Idempotent.
  virtual void Shutdown(absl::Duration grace) = 0;
};

}  // namespace quantmt
