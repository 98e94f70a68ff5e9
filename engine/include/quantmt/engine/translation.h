// What a translation is, for every front end of the engine: where a model
// runs, the options of a request, and what comes back.
//
// Plain C++: no torch, protobuf or SentencePiece types.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quantmt/engine/status.h"

namespace quantmt {

enum class DeviceKind { kCpu, kCuda };

struct RuntimeOptions {
  DeviceKind device = DeviceKind::kCpu;
  int device_index = 0;  // CUDA device ordinal
  // CPU intra-op threads of each replica (ModelSpec::replicas). Default: 0,
  // meaning hardware threads / replicas.
  int num_threads = 0;
  // "auto" (float32 on CPU, float16 on CUDA), "float32", "float16", "bfloat16".
  // REQUIRES: float32 on CPU.
  std::string compute_type = "auto";
  // CUDA models: greedy and beam-search steps replay CUDA graphs (false: the
  // same search op by op, for comparison).
  bool cuda_graphs = true;
};

struct TranslationOptions {
  // Beams per sentence; 1 is greedy search. REQUIRES: 1..64.
  int beam_size = 4;
  // Hypotheses returned per sentence. REQUIRES: 1 <= num_hypotheses <= beam_size.
  int num_hypotheses = 1;
  // score = log_prob / length^length_penalty (length counts the generated
  // tokens, end-of-sentence included); 0 disables normalization.
  float length_penalty = 1.0f;
  // Generated tokens per sentence, end-of-sentence not counted. A longer
  // output is cut here. Capped by the model's max_target_positions.
  int max_length = 256;
  // End-of-sentence is not allowed before this many tokens.
  int min_length = 0;
  // Source tokens per sentence (end-of-sentence included); a longer sentence
  // is refused with InvalidArgument, never silently truncated.
  // Default: 0, meaning the model's max_source_positions.
  int max_input_length = 0;
};

// InvalidArgument naming the first option outside the ranges documented
// above. The engine checks every request with it; front ends with stricter
// limits of their own check those first.
absl::Status ValidateTranslationOptions(const TranslationOptions& options);

struct Hypothesis {
  std::string text;
  std::vector<int> token_ids;  // without BOS/EOS
  float score = 0.0f;          // length-normalized, see TranslationOptions
  float log_prob = 0.0f;       // sum of token log-probabilities
};

struct TranslationResult {
  std::vector<Hypothesis> hypotheses;  // best first
  int source_tokens = 0;               // end-of-sentence included
};

struct ModelInfo {
  std::string model_dir;
  std::string source_language;
  std::string target_language;
  std::string quantization;  // "none" for floating point
  std::string compute_type;  // dtype the model runs in
  std::string device;        // "cpu", "cuda:0"
  int64_t num_parameters = 0;
  int64_t weights_file_bytes = 0;
  int max_source_positions = 0;
};

}  // namespace quantmt
