// The architecture and metadata of a model directory, as read from and
// written to its config.json. Plain C++ (no torch): the checkpoint loader,
// the fuzzers and the training tools share it.
//
// docs/checkpoint-format.md describes the JSON layout in prose.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "quantmt/engine/status.h"

namespace quantmt {

// The config.json format version this build reads and writes. A directory
// with another version is refused at load.
inline constexpr int kCheckpointFormatVersion = 1;

enum class NormPosition { kPre, kPost };
enum class Activation { kRelu, kGelu, kSilu };
enum class PositionEncoding { kSinusoidal, kLearned };

// One Transformer layer. Layers may differ (HAT-style SubTransformers).
struct LayerConfig {
  int heads = 8;
  int ffn_dim = 2048;
  // Width of the query/key/value projections (heads * head_dim).
  // Default: 0, meaning d_model.
  int attention_dim = 0;
};

struct QuantizationConfig {
  // "none" for floating point. Later schemes: "int8_dynamic", "int8_static"
  // (QAT), "daq". An unknown scheme is refused at load.
  std::string scheme = "none";
  // The scheme's parameters as a JSON object, kept verbatim ("{}" if none).
  std::string params_json = "{}";
};

struct ModelConfig {
  int format_version = kCheckpointFormatVersion;

  // --- architecture ---
  int d_model = 512;
  std::vector<LayerConfig> encoder_layers;
  std::vector<LayerConfig> decoder_layers;
  NormPosition norm = NormPosition::kPre;
  Activation activation = Activation::kRelu;
  PositionEncoding positions = PositionEncoding::kSinusoidal;
  int max_source_positions = 256;
  int max_target_positions = 256;
  bool scale_embeddings = true;  // multiply token embeddings by sqrt(d_model)
  // One embedding table for source and target (joint vocabulary).
  bool shared_embeddings = true;
  // Output projection = target embedding matrix (no separate tensor).
  bool tie_output_projection = true;
  float layer_norm_eps = 1e-5f;

  // --- vocabulary ---
  int source_vocab_size = 8000;
  int target_vocab_size = 8000;
  int pad_id = 0;
  int unk_id = 1;
  int bos_id = 2;
  int eos_id = 3;

  // --- languages and tokenizer (file names relative to the model dir) ---
  std::string source_language = "de";
  std::string target_language = "en";
  std::string source_tokenizer = "spm.model";
  std::string target_tokenizer = "spm.model";

  // --- weights ---
  std::string weights_file = "model.safetensors";
  // Storage dtype of floating-point tensors: "float32", "float16", "bfloat16".
  std::string weights_dtype = "float32";

  QuantizationConfig quantization;

  // Free-form provenance (data, steps, hardware, scores) as a JSON object.
  std::string provenance_json = "{}";
};

// Whether `scheme` names a quantization scheme this build can load. The one
// list of known schemes lives behind this function; a new scheme is added
// there.
bool IsKnownQuantizationScheme(const std::string& scheme);

// Parses and validates config.json text. `origin` (usually the file path)
// prefixes every error message.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& origin);

// Checks the invariants of a config (positive sizes, heads dividing
// attention_dim, ids inside the vocabulary, shared embeddings needing equal
// vocabularies, ...).
absl::Status ValidateModelConfig(const ModelConfig& config, const std::string& origin);

// Serializes to pretty-printed config.json text; ParseModelConfig reads it
// back. Always writes the list form of the layers, with attention_dim
// explicit. Expects a config that passes ValidateModelConfig: params_json or
// provenance_json that are not JSON objects are written as strings, which
// ParseModelConfig then refuses.
std::string SerializeModelConfig(const ModelConfig& config);

// Reads `<dir>/config.json`.
absl::StatusOr<ModelConfig> ReadModelConfig(const std::string& model_dir);

}  // namespace quantmt
