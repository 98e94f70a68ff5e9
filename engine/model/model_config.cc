#include "model/model_config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "nlohmann/json.hpp"

namespace quantmt {
namespace {

// Ordered so that free-form objects (provenance, quantization parameters)
// keep the key order their author wrote.
using Json = nlohmann::ordered_json;

// The one list of quantization schemes this build loads. A scheme is added
// here together with the code that loads it.
constexpr const char* kKnownQuantizationSchemes[] = {"none", "int8_dynamic", "int8_static", "daq"};

constexpr const char* kWeightDtypes[] = {"float32", "float16", "bfloat16"};

// Sanity limits. Generous for any real model; they keep a hostile or
// mistyped config.json from making the loader allocate absurd amounts (the
// model is built from the config before the weights are checked against it).
constexpr int kMaxLayers = 1024;
constexpr int kMaxDimension = 1 << 20;
constexpr size_t kMaxConfigBytes = 16 << 20;
// The deepest JSON a config needs is about 5 levels; free-form sections get
// room, but not so much that recursive dumping could exhaust the stack.
constexpr int kMaxJsonDepth = 64;

template <typename E>
struct EnumName {
  E value;
  const char* name;
};
constexpr EnumName<NormPosition> kNormNames[] = {{NormPosition::kPre, "pre"},
                                                 {NormPosition::kPost, "post"}};
constexpr EnumName<Activation> kActivationNames[] = {
    {Activation::kRelu, "relu"}, {Activation::kGelu, "gelu"}, {Activation::kSilu, "silu"}};
constexpr EnumName<PositionEncoding> kPositionNames[] = {
    {PositionEncoding::kSinusoidal, "sinusoidal"}, {PositionEncoding::kLearned, "learned"}};

template <typename E, size_t N>
const char* EnumToName(E value, const EnumName<E> (&names)[N]) {
  for (const auto& entry : names) {
    if (entry.value == value) return entry.name;
  }
  return "?";
}

template <typename E, size_t N>
std::string EnumNameList(const EnumName<E> (&names)[N]) {
  std::vector<std::string> list;
  for (const auto& entry : names) list.push_back(entry.name);
  return absl::StrJoin(list, ", ");
}

absl::Status Error(const std::string& origin, const std::string& key, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(origin, ": ", key, ": ", what));
}

// A short description of a JSON value for error messages.
std::string Describe(const Json& value) {
  if (!value.is_primitive()) return value.type_name();
  std::string text = value.dump(-1, ' ', false, Json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return absl::StrCat(value.type_name(), " ", text);
}

// Parses JSON text, refusing nesting beyond kMaxJsonDepth. Never throws.
absl::StatusOr<Json> ParseJsonText(const std::string& text, const std::string& origin) {
  bool too_deep = false;
  Json::parser_callback_t callback = [&](int depth, Json::parse_event_t event, Json&) {
    if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth) {
      too_deep = true;
      return false;
    }
    return true;
  };
  Json json;
  try {
    json = Json::parse(text, callback);
  } catch (const Json::exception& e) {
    // what() is "[json.exception.parse_error.101] parse error at line 3, ...".
    std::string what = e.what();
    const size_t bracket = what.find("] ");
    if (bracket != std::string::npos) what = what.substr(bracket + 2);
    return absl::InvalidArgumentError(absl::StrCat(origin, ": not valid JSON: ", what));
  }
  if (too_deep) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": JSON nested deeper than ", kMaxJsonDepth, " levels"));
  }
  return json;
}

// A JSON object being read, with its key path ("architecture.encoder") so
// that every error names the offending key.
class Object {
 public:
  Object(const Json& json, std::string path, const std::string& origin)
      : json_(json), path_(std::move(path)), origin_(origin) {}

  const Json& json() const { return json_; }
  const std::string& path() const { return path_; }
  const std::string& origin() const { return origin_; }
  std::string KeyPath(const std::string& key) const {
    return path_.empty() ? key : absl::StrCat(path_, ".", key);
  }
  absl::Status KeyError(const std::string& key, const std::string& what) const {
    return Error(origin_, KeyPath(key), what);
  }
  const Json* Find(const char* key) const {
    auto it = json_.find(key);
    return it == json_.end() ? nullptr : &it.value();
  }

  // Unknown keys are refused: a misspelt optional key ("scale_embedding")
  // would otherwise silently load a different model.
  absl::Status RejectUnknownKeys(std::initializer_list<const char*> known) const {
    for (const auto& item : json_.items()) {
      bool found = false;
      for (const char* key : known) found = found || item.key() == key;
      if (!found) {
        return KeyError(item.key(),
                        absl::StrCat("unknown key (known here: ", absl::StrJoin(known, ", "), ")"));
      }
    }
    return absl::OkStatus();
  }

  // Leaves *out unchanged if the key is absent and not required.
  absl::Status GetInt(const char* key, bool required, const char* expected, int* out) const {
    const Json* value = Find(key);
    if (value == nullptr) return required ? Missing(key, expected) : absl::OkStatus();
    const bool fits =
        (value->is_number_unsigned() &&
         value->get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<int>::max())) ||
        (value->is_number_integer() && !value->is_number_unsigned() &&
         value->get<int64_t>() >= std::numeric_limits<int>::min() &&
         value->get<int64_t>() <= std::numeric_limits<int>::max());
    if (!fits) return WrongType(key, expected, *value);
    *out = value->get<int>();
    return absl::OkStatus();
  }

  absl::Status GetBool(const char* key, bool* out) const {
    const Json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    if (!value->is_boolean()) return WrongType(key, "true or false", *value);
    *out = value->get<bool>();
    return absl::OkStatus();
  }

  absl::Status GetFloat(const char* key, const char* expected, float* out) const {
    const Json* value = Find(key);
    if (value == nullptr) return absl::OkStatus();
    // Converting a double outside float's range is undefined behaviour.
    if (!value->is_number() || !std::isfinite(value->get<double>()) ||
        std::fabs(value->get<double>()) > std::numeric_limits<float>::max()) {
      return WrongType(key, expected, *value);
    }
    *out = static_cast<float>(value->get<double>());
    return absl::OkStatus();
  }

  absl::Status GetString(const char* key, bool required, std::string* out) const {
    const Json* value = Find(key);
    if (value == nullptr) return required ? Missing(key, "a string") : absl::OkStatus();
    if (!value->is_string()) return WrongType(key, "a string", *value);
    *out = value->get<std::string>();
    return absl::OkStatus();
  }

  template <typename E, size_t N>
  absl::Status GetEnum(const char* key, const EnumName<E> (&names)[N], E* out) const {
    std::string name;
    if (Find(key) == nullptr) return absl::OkStatus();
    RETURN_IF_ERROR(GetString(key, /*required=*/false, &name));
    for (const auto& entry : names) {
      if (name == entry.name) {
        *out = entry.value;
        return absl::OkStatus();
      }
    }
    return KeyError(key, absl::StrCat("'", name, "' is not one of ", EnumNameList(names)));
  }

  // std::nullopt if the key is absent and not required.
  absl::StatusOr<std::optional<Object>> GetObject(const char* key, bool required) const {
    const Json* value = Find(key);
    if (value == nullptr) {
      if (!required) return std::optional<Object>();
      return Missing(key, "an object");
    }
    if (!value->is_object()) return WrongType(key, "an object", *value);
    return std::optional<Object>(Object(*value, KeyPath(key), origin_));
  }

  absl::Status Missing(const char* key, const char* expected) const {
    return KeyError(key, absl::StrCat("missing; expected ", expected));
  }
  absl::Status WrongType(const char* key, const char* expected, const Json& value) const {
    return KeyError(key, absl::StrCat("expected ", expected, ", got ", Describe(value)));
  }

 private:
  const Json& json_;
  std::string path_;
  const std::string& origin_;
};

// ---------------------------------------------------------------- parsing

absl::Status ParseFormat(const Object& root, int* version) {
  std::string format;
  RETURN_IF_ERROR(root.GetString("format", /*required=*/true, &format));
  if (format != "quantmt") {
    return root.KeyError("format", absl::StrCat("expected \"quantmt\", got \"", format, "\""));
  }
  RETURN_IF_ERROR(root.GetInt("format_version", /*required=*/true, "an integer", version));
  // Checked before anything else: another version may lay out the rest
  // differently, and "unsupported version" is the useful message then.
  if (*version != kCheckpointFormatVersion) {
    return root.KeyError(
        "format_version",
        absl::StrCat("version ", *version, " is not supported (this build reads version ",
                     kCheckpointFormatVersion, ")"));
  }
  return absl::OkStatus();
}

absl::Status ParseLayerFields(const Object& layer, LayerConfig* out) {
  RETURN_IF_ERROR(layer.GetInt("heads", /*required=*/true, "a positive integer", &out->heads));
  RETURN_IF_ERROR(layer.GetInt("ffn_dim", /*required=*/true, "a positive integer", &out->ffn_dim));
  return layer.GetInt("attention_dim", /*required=*/false, "a non-negative integer",
                      &out->attention_dim);
}

absl::Status ParseLayerList(const Object& stack, const Json& list,
                            std::vector<LayerConfig>* layers) {
  if (!list.is_array()) return stack.WrongType("layers", "a list of layer objects", list);
  if (list.size() > static_cast<size_t>(kMaxLayers)) {
    return stack.KeyError("layers", absl::StrCat("more than ", kMaxLayers, " layers"));
  }
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string path = absl::StrCat(stack.KeyPath("layers"), "[", i, "]");
    if (!list[i].is_object()) {
      return Error(stack.origin(), path,
                   absl::StrCat("expected an object, got ", Describe(list[i])));
    }
    Object layer(list[i], path, stack.origin());
    RETURN_IF_ERROR(layer.RejectUnknownKeys({"heads", "ffn_dim", "attention_dim"}));
    LayerConfig config;
    RETURN_IF_ERROR(ParseLayerFields(layer, &config));
    layers->push_back(config);
  }
  return absl::OkStatus();
}

// "encoder": {"layers": [{...}, ...]} or the uniform shorthand
// "encoder": {"num_layers": 6, "heads": 8, "ffn_dim": 2048}.
absl::Status ParseStack(const Object& arch, const char* key, std::vector<LayerConfig>* layers) {
  ASSIGN_OR_RETURN(std::optional<Object> stack, arch.GetObject(key, /*required=*/true));
  const Json* list = stack->Find("layers");
  const bool shorthand = stack->Find("num_layers") != nullptr;
  if ((list != nullptr) == shorthand) {
    return Error(arch.origin(), stack->path(),
                 "expected either 'layers' (a list) or 'num_layers' (uniform layers)");
  }
  layers->clear();
  if (list != nullptr) {
    RETURN_IF_ERROR(stack->RejectUnknownKeys({"layers"}));
    return ParseLayerList(*stack, *list, layers);
  }
  RETURN_IF_ERROR(stack->RejectUnknownKeys({"num_layers", "heads", "ffn_dim", "attention_dim"}));
  const std::string expected = absl::StrCat("an integer in [1, ", kMaxLayers, "]");
  int num_layers = 0;
  RETURN_IF_ERROR(stack->GetInt("num_layers", /*required=*/true, expected.c_str(), &num_layers));
  if (num_layers < 1 || num_layers > kMaxLayers) {
    return stack->KeyError("num_layers", absl::StrCat("expected ", expected, ", got ", num_layers));
  }
  LayerConfig layer;
  RETURN_IF_ERROR(ParseLayerFields(*stack, &layer));
  layers->assign(num_layers, layer);
  return absl::OkStatus();
}

absl::Status ParseArchitecture(const Object& root, ModelConfig* config) {
  ASSIGN_OR_RETURN(std::optional<Object> arch, root.GetObject("architecture", /*required=*/true));
  RETURN_IF_ERROR(
      arch->RejectUnknownKeys({"d_model", "encoder", "decoder", "norm", "activation", "positions",
                               "max_source_positions", "max_target_positions", "scale_embeddings",
                               "shared_embeddings", "tie_output_projection", "layer_norm_eps"}));
  RETURN_IF_ERROR(
      arch->GetInt("d_model", /*required=*/true, "a positive integer", &config->d_model));
  RETURN_IF_ERROR(ParseStack(*arch, "encoder", &config->encoder_layers));
  RETURN_IF_ERROR(ParseStack(*arch, "decoder", &config->decoder_layers));
  RETURN_IF_ERROR(arch->GetEnum("norm", kNormNames, &config->norm));
  RETURN_IF_ERROR(arch->GetEnum("activation", kActivationNames, &config->activation));
  RETURN_IF_ERROR(arch->GetEnum("positions", kPositionNames, &config->positions));
  RETURN_IF_ERROR(arch->GetInt("max_source_positions", false, "a positive integer",
                               &config->max_source_positions));
  RETURN_IF_ERROR(arch->GetInt("max_target_positions", false, "a positive integer",
                               &config->max_target_positions));
  RETURN_IF_ERROR(arch->GetBool("scale_embeddings", &config->scale_embeddings));
  RETURN_IF_ERROR(arch->GetBool("shared_embeddings", &config->shared_embeddings));
  RETURN_IF_ERROR(arch->GetBool("tie_output_projection", &config->tie_output_projection));
  return arch->GetFloat("layer_norm_eps", "a positive number", &config->layer_norm_eps);
}

absl::Status ParseVocab(const Object& root, ModelConfig* config) {
  ASSIGN_OR_RETURN(std::optional<Object> vocab, root.GetObject("vocab", /*required=*/true));
  RETURN_IF_ERROR(vocab->RejectUnknownKeys(
      {"source_size", "target_size", "pad_id", "unk_id", "bos_id", "eos_id"}));
  RETURN_IF_ERROR(
      vocab->GetInt("source_size", true, "a positive integer", &config->source_vocab_size));
  RETURN_IF_ERROR(
      vocab->GetInt("target_size", true, "a positive integer", &config->target_vocab_size));
  const char* id = "a non-negative integer";
  RETURN_IF_ERROR(vocab->GetInt("pad_id", false, id, &config->pad_id));
  RETURN_IF_ERROR(vocab->GetInt("unk_id", false, id, &config->unk_id));
  RETURN_IF_ERROR(vocab->GetInt("bos_id", false, id, &config->bos_id));
  return vocab->GetInt("eos_id", false, id, &config->eos_id);
}

absl::Status ParseLanguagesAndTokenizer(const Object& root, ModelConfig* config) {
  ASSIGN_OR_RETURN(std::optional<Object> languages, root.GetObject("languages", false));
  if (languages) {
    RETURN_IF_ERROR(languages->RejectUnknownKeys({"source", "target"}));
    RETURN_IF_ERROR(languages->GetString("source", false, &config->source_language));
    RETURN_IF_ERROR(languages->GetString("target", false, &config->target_language));
  }
  ASSIGN_OR_RETURN(std::optional<Object> tokenizer, root.GetObject("tokenizer", false));
  if (tokenizer) {
    RETURN_IF_ERROR(tokenizer->RejectUnknownKeys({"type", "source", "target"}));
    std::string type = "sentencepiece";
    RETURN_IF_ERROR(tokenizer->GetString("type", false, &type));
    if (type != "sentencepiece") {
      return tokenizer->KeyError(
          "type", absl::StrCat("'", type, "' is not supported (known: sentencepiece)"));
    }
    RETURN_IF_ERROR(tokenizer->GetString("source", false, &config->source_tokenizer));
    RETURN_IF_ERROR(tokenizer->GetString("target", false, &config->target_tokenizer));
  }
  return absl::OkStatus();
}

absl::Status ParseWeightsAndQuantization(const Object& root, ModelConfig* config) {
  ASSIGN_OR_RETURN(std::optional<Object> weights, root.GetObject("weights", false));
  if (weights) {
    RETURN_IF_ERROR(weights->RejectUnknownKeys({"file", "dtype"}));
    RETURN_IF_ERROR(weights->GetString("file", false, &config->weights_file));
    RETURN_IF_ERROR(weights->GetString("dtype", false, &config->weights_dtype));
  }
  ASSIGN_OR_RETURN(std::optional<Object> quantization, root.GetObject("quantization", false));
  if (quantization) {
    // Everything but "scheme" belongs to the scheme; kept verbatim.
    RETURN_IF_ERROR(quantization->GetString("scheme", true, &config->quantization.scheme));
    Json params = quantization->json();
    params.erase("scheme");
    config->quantization.params_json = params.dump();
  }
  ASSIGN_OR_RETURN(std::optional<Object> provenance, root.GetObject("provenance", false));
  if (provenance) config->provenance_json = provenance->json().dump();
  return absl::OkStatus();
}

// ---------------------------------------------------------------- validation

absl::Status CheckRange(const std::string& origin, const std::string& key, int value, int min,
                        int max) {
  if (value >= min && value <= max) return absl::OkStatus();
  return Error(origin, key,
               absl::StrCat("expected an integer in [", min, ", ", max, "], got ", value));
}

absl::Status ValidateStack(const std::string& origin, const std::string& key, int d_model,
                           const std::vector<LayerConfig>& layers) {
  if (layers.empty() || layers.size() > static_cast<size_t>(kMaxLayers)) {
    return Error(origin, key,
                 absl::StrCat("expected 1 to ", kMaxLayers, " layers, got ", layers.size()));
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    const LayerConfig& layer = layers[i];
    const std::string path = absl::StrCat(key, ".layers[", i, "]");
    RETURN_IF_ERROR(CheckRange(origin, path + ".heads", layer.heads, 1, kMaxDimension));
    RETURN_IF_ERROR(CheckRange(origin, path + ".ffn_dim", layer.ffn_dim, 1, kMaxDimension));
    RETURN_IF_ERROR(
        CheckRange(origin, path + ".attention_dim", layer.attention_dim, 0, kMaxDimension));
    const int attention_dim = layer.attention_dim == 0 ? d_model : layer.attention_dim;
    if (attention_dim % layer.heads != 0) {
      return Error(origin, path + ".heads",
                   absl::StrCat(layer.heads, " heads do not divide attention_dim ", attention_dim,
                                layer.attention_dim == 0 ? " (= d_model)" : ""));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateArchitecture(const ModelConfig& config, const std::string& origin) {
  RETURN_IF_ERROR(CheckRange(origin, "architecture.d_model", config.d_model, 1, kMaxDimension));
  RETURN_IF_ERROR(
      ValidateStack(origin, "architecture.encoder", config.d_model, config.encoder_layers));
  RETURN_IF_ERROR(
      ValidateStack(origin, "architecture.decoder", config.d_model, config.decoder_layers));
  RETURN_IF_ERROR(CheckRange(origin, "architecture.max_source_positions",
                             config.max_source_positions, 1, kMaxDimension));
  RETURN_IF_ERROR(CheckRange(origin, "architecture.max_target_positions",
                             config.max_target_positions, 1, kMaxDimension));
  if (!(config.layer_norm_eps > 0) || !std::isfinite(config.layer_norm_eps)) {
    return Error(origin, "architecture.layer_norm_eps",
                 absl::StrCat("expected a positive number, got ", config.layer_norm_eps));
  }
  return absl::OkStatus();
}

absl::Status ValidateVocab(const ModelConfig& config, const std::string& origin) {
  RETURN_IF_ERROR(
      CheckRange(origin, "vocab.source_size", config.source_vocab_size, 1, kMaxDimension));
  RETURN_IF_ERROR(
      CheckRange(origin, "vocab.target_size", config.target_vocab_size, 1, kMaxDimension));
  if (config.shared_embeddings && config.source_vocab_size != config.target_vocab_size) {
    return Error(origin, "architecture.shared_embeddings",
                 absl::StrCat("needs equal vocabularies, but vocab.source_size is ",
                              config.source_vocab_size, " and vocab.target_size is ",
                              config.target_vocab_size));
  }
  // Special ids are used on both sides, so they must fit the smaller vocabulary.
  const int limit = std::min(config.source_vocab_size, config.target_vocab_size);
  const std::pair<const char*, int> ids[] = {{"vocab.pad_id", config.pad_id},
                                             {"vocab.unk_id", config.unk_id},
                                             {"vocab.bos_id", config.bos_id},
                                             {"vocab.eos_id", config.eos_id}};
  for (const auto& [key, value] : ids) {
    if (value < 0 || value >= limit) {
      return Error(origin, key, absl::StrCat(value, " is outside the vocabulary [0, ", limit, ")"));
    }
  }
  if (config.pad_id == config.bos_id || config.pad_id == config.eos_id ||
      config.bos_id == config.eos_id) {
    return Error(origin, "vocab",
                 absl::StrCat("pad_id, bos_id and eos_id must differ, got ", config.pad_id, ", ",
                              config.bos_id, ", ", config.eos_id));
  }
  return absl::OkStatus();
}

// File names are relative to the model directory and stay inside it.
absl::Status ValidateRelativeFile(const std::string& origin, const std::string& key,
                                  const std::string& file) {
  const std::filesystem::path path(file);
  bool escapes = path.is_absolute();
  for (const auto& part : path) escapes = escapes || part == "..";
  if (file.empty() || escapes) {
    return Error(origin, key,
                 absl::StrCat("'", file, "' must be a file name inside the model directory"));
  }
  return absl::OkStatus();
}

// Whether `text` is a JSON object, optionally without the key `forbidden`.
bool IsJsonObjectText(const std::string& text, const char* forbidden = nullptr) {
  absl::StatusOr<Json> json = ParseJsonText(text, "");
  return json.ok() && json->is_object() && (forbidden == nullptr || !json->contains(forbidden));
}

absl::Status ValidateFilesAndQuantization(const ModelConfig& config, const std::string& origin) {
  RETURN_IF_ERROR(ValidateRelativeFile(origin, "tokenizer.source", config.source_tokenizer));
  RETURN_IF_ERROR(ValidateRelativeFile(origin, "tokenizer.target", config.target_tokenizer));
  RETURN_IF_ERROR(ValidateRelativeFile(origin, "weights.file", config.weights_file));
  bool known_dtype = false;
  for (const char* dtype : kWeightDtypes)
    known_dtype = known_dtype || config.weights_dtype == dtype;
  if (!known_dtype) {
    return Error(origin, "weights.dtype",
                 absl::StrCat("'", config.weights_dtype, "' is not one of ",
                              absl::StrJoin(kWeightDtypes, ", ")));
  }
  if (!IsKnownQuantizationScheme(config.quantization.scheme)) {
    // Worded as documented: "quantization.scheme 'x' is not supported".
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": quantization.scheme '", config.quantization.scheme,
        "' is not supported (known: ", absl::StrJoin(kKnownQuantizationSchemes, ", "), ")"));
  }
  if (!IsJsonObjectText(config.quantization.params_json, "scheme")) {
    return Error(origin, "quantization", "parameters must be a JSON object without a 'scheme' key");
  }
  if (!IsJsonObjectText(config.provenance_json)) {
    return Error(origin, "provenance", "expected a JSON object");
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------- serializing

// The shortest decimal that reads back as the same float, so that 1e-5f is
// written as 1e-05 rather than 9.999999747378752e-06.
double FloatForJson(float value) {
  char text[64];
  const auto printed = std::to_chars(text, text + sizeof(text), value);
  double result = value;
  std::from_chars(text, printed.ptr, result);
  return result;
}

Json LayersToJson(const std::vector<LayerConfig>& layers, int d_model) {
  Json list = Json::array();
  for (const LayerConfig& layer : layers) {
    list.push_back({{"heads", layer.heads},
                    {"ffn_dim", layer.ffn_dim},
                    {"attention_dim", layer.attention_dim == 0 ? d_model : layer.attention_dim}});
  }
  return Json{{"layers", std::move(list)}};
}

// A JSON object kept as text; a string if the text is not an object (see
// SerializeModelConfig).
Json ObjectFromText(const std::string& text) {
  absl::StatusOr<Json> json = ParseJsonText(text, "");
  if (json.ok() && json->is_object()) return *std::move(json);
  return Json(text);
}

Json ArchitectureToJson(const ModelConfig& config) {
  return Json{
      {"d_model", config.d_model},
      {"encoder", LayersToJson(config.encoder_layers, config.d_model)},
      {"decoder", LayersToJson(config.decoder_layers, config.d_model)},
      {"norm", EnumToName(config.norm, kNormNames)},
      {"activation", EnumToName(config.activation, kActivationNames)},
      {"positions", EnumToName(config.positions, kPositionNames)},
      {"max_source_positions", config.max_source_positions},
      {"max_target_positions", config.max_target_positions},
      {"scale_embeddings", config.scale_embeddings},
      {"shared_embeddings", config.shared_embeddings},
      {"tie_output_projection", config.tie_output_projection},
      {"layer_norm_eps", FloatForJson(config.layer_norm_eps)},
  };
}

Json QuantizationToJson(const QuantizationConfig& quantization) {
  Json json = Json::object();
  json["scheme"] = quantization.scheme;
  Json params = ObjectFromText(quantization.params_json);
  if (!params.is_object()) {
    json["params_json"] = std::move(params);
    return json;
  }
  for (auto& item : params.items()) {
    if (item.key() != "scheme") json[item.key()] = item.value();
  }
  return json;
}

// ---------------------------------------------------------------- reading

absl::StatusOr<std::string> ReadOpenFile(int fd, const std::string& path, size_t max_bytes) {
  struct stat info;
  if (::fstat(fd, &info) != 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": stat"));
  if (!S_ISREG(info.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  // Reads up to one chunk past the cap to notice a file that is too large,
  // even one that grew after fstat.
  std::string text;
  char chunk[65536];
  while (text.size() <= max_bytes) {
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": read failed"));
    if (n == 0) return text;
    text.append(chunk, static_cast<size_t>(n));
  }
  return absl::InvalidArgumentError(
      absl::StrCat(path, ": larger than the ", max_bytes, "-byte limit"));
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, size_t max_bytes) {
  // O_NONBLOCK: opening a FIFO must not hang; fstat then refuses it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return absl::ErrnoToStatus(errno, absl::StrCat(path, ": cannot open"));
  absl::StatusOr<std::string> text = ReadOpenFile(fd, path, max_bytes);
  ::close(fd);
  return text;
}

}  // namespace

bool IsKnownQuantizationScheme(const std::string& scheme) {
  for (const char* known : kKnownQuantizationSchemes) {
    if (scheme == known) return true;
  }
  return false;
}

absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& origin) {
  ASSIGN_OR_RETURN(Json json, ParseJsonText(json_text, origin));
  if (!json.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": expected a JSON object at the top level, got ", Describe(json)));
  }
  const Object root(json, "", origin);
  ModelConfig config;
  RETURN_IF_ERROR(ParseFormat(root, &config.format_version));
  RETURN_IF_ERROR(
      root.RejectUnknownKeys({"format", "format_version", "architecture", "vocab", "languages",
                              "tokenizer", "weights", "quantization", "provenance"}));
  RETURN_IF_ERROR(ParseArchitecture(root, &config));
  RETURN_IF_ERROR(ParseVocab(root, &config));
  RETURN_IF_ERROR(ParseLanguagesAndTokenizer(root, &config));
  RETURN_IF_ERROR(ParseWeightsAndQuantization(root, &config));
  RETURN_IF_ERROR(ValidateModelConfig(config, origin));
  return config;
}

absl::Status ValidateModelConfig(const ModelConfig& config, const std::string& origin) {
  if (config.format_version != kCheckpointFormatVersion) {
    return Error(origin, "format_version",
                 absl::StrCat("version ", config.format_version,
                              " is not supported (this build reads version ",
                              kCheckpointFormatVersion, ")"));
  }
  RETURN_IF_ERROR(ValidateArchitecture(config, origin));
  RETURN_IF_ERROR(ValidateVocab(config, origin));
  return ValidateFilesAndQuantization(config, origin);
}

std::string SerializeModelConfig(const ModelConfig& config) {
  Json json = Json::object();
  json["format"] = "quantmt";
  json["format_version"] = config.format_version;
  json["architecture"] = ArchitectureToJson(config);
  json["vocab"] = {{"source_size", config.source_vocab_size},
                   {"target_size", config.target_vocab_size},
                   {"pad_id", config.pad_id},
                   {"unk_id", config.unk_id},
                   {"bos_id", config.bos_id},
                   {"eos_id", config.eos_id}};
  json["languages"] = {{"source", config.source_language}, {"target", config.target_language}};
  json["tokenizer"] = {{"type", "sentencepiece"},
                       {"source", config.source_tokenizer},
                       {"target", config.target_tokenizer}};
  json["weights"] = {{"file", config.weights_file}, {"dtype", config.weights_dtype}};
  json["quantization"] = QuantizationToJson(config.quantization);
  json["provenance"] = ObjectFromText(config.provenance_json);
  // Invalid UTF-8 (only possible in a config built in code) is replaced
  // rather than thrown on: this function cannot fail.
  return json.dump(2, ' ', false, Json::error_handler_t::replace) + "\n";
}

absl::StatusOr<ModelConfig> ReadModelConfig(const std::string& model_dir) {
  const std::string path = (std::filesystem::path(model_dir) / "config.json").string();
  ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path, kMaxConfigBytes));
  return ParseModelConfig(text, path);
}

}  // namespace quantmt
