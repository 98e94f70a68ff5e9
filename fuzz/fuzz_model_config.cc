// Arbitrary bytes as config.json text. A config that parses must validate,
// and serializing it must give text that parses back to the same config.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "fuzz_check.h"
#include "model/model_config.h"

namespace {

using quantmt::LayerConfig;
using quantmt::ModelConfig;

// attention_dim 0 means d_model; serializing writes it out explicitly.
bool SameLayers(const std::vector<LayerConfig>& a, const std::vector<LayerConfig>& b, int d_model) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const int a_dim = a[i].attention_dim == 0 ? d_model : a[i].attention_dim;
    const int b_dim = b[i].attention_dim == 0 ? d_model : b[i].attention_dim;
    if (a[i].heads != b[i].heads || a[i].ffn_dim != b[i].ffn_dim || a_dim != b_dim) return false;
  }
  return true;
}

bool SameConfig(const ModelConfig& a, const ModelConfig& b) {
  return a.format_version == b.format_version && a.d_model == b.d_model &&
         SameLayers(a.encoder_layers, b.encoder_layers, a.d_model) &&
         SameLayers(a.decoder_layers, b.decoder_layers, a.d_model) && a.norm == b.norm &&
         a.activation == b.activation && a.positions == b.positions &&
         a.max_source_positions == b.max_source_positions &&
         a.max_target_positions == b.max_target_positions &&
         a.scale_embeddings == b.scale_embeddings && a.shared_embeddings == b.shared_embeddings &&
         a.tie_output_projection == b.tie_output_projection &&
         a.layer_norm_eps == b.layer_norm_eps && a.source_vocab_size == b.source_vocab_size &&
         a.target_vocab_size == b.target_vocab_size && a.pad_id == b.pad_id &&
         a.unk_id == b.unk_id && a.bos_id == b.bos_id && a.eos_id == b.eos_id &&
         a.source_language == b.source_language && a.target_language == b.target_language &&
         a.source_tokenizer == b.source_tokenizer && a.target_tokenizer == b.target_tokenizer &&
         a.weights_file == b.weights_file && a.weights_dtype == b.weights_dtype &&
         a.quantization.scheme == b.quantization.scheme &&
         a.quantization.params_json == b.quantization.params_json &&
         a.provenance_json == b.provenance_json;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<ModelConfig> config = quantmt::ParseModelConfig(text, "fuzz");
  if (!config.ok()) {
    FUZZ_CHECK(!config.status().message().empty(), "every refusal says why");
    return 0;
  }
  FUZZ_CHECK(quantmt::ValidateModelConfig(*config, "fuzz").ok(), "a parsed config validates");
  const std::string serialized = quantmt::SerializeModelConfig(*config);
  absl::StatusOr<ModelConfig> reparsed = quantmt::ParseModelConfig(serialized, "serialized");
  if (!reparsed.ok()) std::fprintf(stderr, "%s\n", reparsed.status().ToString().c_str());
  FUZZ_CHECK(reparsed.ok(), "serialized config parses");
  FUZZ_CHECK(SameConfig(*config, *reparsed), "serialized config parses to the same config");
  FUZZ_CHECK(quantmt::SerializeModelConfig(*reparsed) == serialized, "serializing is stable");
  return 0;
}
