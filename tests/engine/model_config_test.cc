#include "model/model_config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace quantmt {
namespace {

using Json = nlohmann::ordered_json;

constexpr char kOrigin[] = "models/x/config.json";

// The example of docs/checkpoint-format.md.
Json ExampleJson() {
  return Json::parse(R"({
    "format": "quantmt",
    "format_version": 1,
    "architecture": {
      "d_model": 512,
      "encoder": {"layers": [{"heads": 8, "ffn_dim": 2048, "attention_dim": 512},
                             {"heads": 4, "ffn_dim": 1024, "attention_dim": 256}]},
      "decoder": {"num_layers": 3, "heads": 8, "ffn_dim": 2048},
      "norm": "pre",
      "activation": "relu",
      "positions": "sinusoidal",
      "max_source_positions": 256,
      "max_target_positions": 256,
      "scale_embeddings": true,
      "shared_embeddings": true,
      "tie_output_projection": true,
      "layer_norm_eps": 1e-5
    },
    "vocab": {"source_size": 8000, "target_size": 8000,
              "pad_id": 0, "unk_id": 1, "bos_id": 2, "eos_id": 3},
    "languages": {"source": "de", "target": "en"},
    "tokenizer": {"type": "sentencepiece", "source": "spm.model", "target": "spm.model"},
    "weights": {"file": "model.safetensors", "dtype": "float32"},
    "quantization": {"scheme": "none"},
    "provenance": {"data": "wmt14", "steps": 100000}
  })");
}

absl::StatusOr<ModelConfig> Parse(const Json& json) {
  return ParseModelConfig(json.dump(), kOrigin);
}

void ExpectError(const absl::Status& status, absl::StatusCode code,
                 const std::vector<std::string>& parts) {
  EXPECT_EQ(status.code(), code) << status;
  for (const std::string& part : parts) {
    EXPECT_NE(status.message().find(part), absl::string_view::npos)
        << "message '" << status.message() << "' lacks '" << part << "'";
  }
}

// Parses `json` and expects InvalidArgument with the origin and `parts`.
void ExpectInvalid(const Json& json, const std::vector<std::string>& parts) {
  std::vector<std::string> all = {std::string(kOrigin) + ": "};
  all.insert(all.end(), parts.begin(), parts.end());
  ExpectError(Parse(json).status(), absl::StatusCode::kInvalidArgument, all);
}

void ExpectSameConfig(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.format_version, b.format_version);
  EXPECT_EQ(a.d_model, b.d_model);
  auto same_layers = [](const std::vector<LayerConfig>& x, const std::vector<LayerConfig>& y) {
    if (x.size() != y.size()) return false;
    for (size_t i = 0; i < x.size(); ++i) {
      if (x[i].heads != y[i].heads || x[i].ffn_dim != y[i].ffn_dim ||
          x[i].attention_dim != y[i].attention_dim) {
        return false;
      }
    }
    return true;
  };
  EXPECT_TRUE(same_layers(a.encoder_layers, b.encoder_layers));
  EXPECT_TRUE(same_layers(a.decoder_layers, b.decoder_layers));
  EXPECT_EQ(a.norm, b.norm);
  EXPECT_EQ(a.activation, b.activation);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.max_source_positions, b.max_source_positions);
  EXPECT_EQ(a.max_target_positions, b.max_target_positions);
  EXPECT_EQ(a.scale_embeddings, b.scale_embeddings);
  EXPECT_EQ(a.shared_embeddings, b.shared_embeddings);
  EXPECT_EQ(a.tie_output_projection, b.tie_output_projection);
  EXPECT_EQ(a.layer_norm_eps, b.layer_norm_eps);
  EXPECT_EQ(a.source_vocab_size, b.source_vocab_size);
  EXPECT_EQ(a.target_vocab_size, b.target_vocab_size);
  EXPECT_EQ(a.pad_id, b.pad_id);
  EXPECT_EQ(a.unk_id, b.unk_id);
  EXPECT_EQ(a.bos_id, b.bos_id);
  EXPECT_EQ(a.eos_id, b.eos_id);
  EXPECT_EQ(a.source_language, b.source_language);
  EXPECT_EQ(a.target_language, b.target_language);
  EXPECT_EQ(a.source_tokenizer, b.source_tokenizer);
  EXPECT_EQ(a.target_tokenizer, b.target_tokenizer);
  EXPECT_EQ(a.weights_file, b.weights_file);
  EXPECT_EQ(a.weights_dtype, b.weights_dtype);
  EXPECT_EQ(a.quantization.scheme, b.quantization.scheme);
  EXPECT_EQ(a.quantization.params_json, b.quantization.params_json);
  EXPECT_EQ(a.provenance_json, b.provenance_json);
}

// A config that differs from the defaults almost everywhere.
ModelConfig UnusualConfig() {
  ModelConfig config;
  config.d_model = 384;
  config.encoder_layers = {{6, 1536, 384}, {4, 768, 192}, {12, 3072, 384}};
  config.decoder_layers = {{2, 512, 128}};
  config.norm = NormPosition::kPost;
  config.activation = Activation::kSilu;
  config.positions = PositionEncoding::kLearned;
  config.max_source_positions = 1024;
  config.max_target_positions = 512;
  config.scale_embeddings = false;
  config.shared_embeddings = false;
  config.tie_output_projection = false;
  config.layer_norm_eps = 1e-6f;
  config.source_vocab_size = 32000;
  config.target_vocab_size = 16000;
  config.pad_id = 3;
  config.unk_id = 0;
  config.bos_id = 1;
  config.eos_id = 2;
  config.source_language = "en";
  config.target_language = "ja";
  config.source_tokenizer = "src.spm";
  config.target_tokenizer = "tokenizers/tgt.spm";
  config.weights_file = "weights/model.safetensors";
  config.weights_dtype = "bfloat16";
  config.quantization.params_json = R"({"zeta":1,"alpha":[1,2]})";
  config.provenance_json = R"({"steps":1000,"bleu":{"newstest":27.5},"data":"wmt"})";
  return config;
}

// ------------------------------------------------------------ good configs

TEST(ModelConfigTest, ParsesTheDocumentedExample) {
  absl::StatusOr<ModelConfig> config = Parse(ExampleJson());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->d_model, 512);
  ASSERT_EQ(config->encoder_layers.size(), 2u);
  EXPECT_EQ(config->encoder_layers[1].heads, 4);
  EXPECT_EQ(config->encoder_layers[1].ffn_dim, 1024);
  EXPECT_EQ(config->encoder_layers[1].attention_dim, 256);
  ASSERT_EQ(config->decoder_layers.size(), 3u);
  EXPECT_EQ(config->decoder_layers[2].heads, 8);
  EXPECT_EQ(config->decoder_layers[2].attention_dim, 0);
  EXPECT_EQ(config->layer_norm_eps, 1e-5f);
  EXPECT_EQ(config->quantization.scheme, "none");
  EXPECT_EQ(config->quantization.params_json, "{}");
  EXPECT_EQ(config->provenance_json, R"({"data":"wmt14","steps":100000})");
}

TEST(ModelConfigTest, RoundTripSerializeParse) {
  const ModelConfig original = UnusualConfig();
  ASSERT_TRUE(ValidateModelConfig(original, "original").ok());
  const std::string text = SerializeModelConfig(original);
  absl::StatusOr<ModelConfig> parsed = ParseModelConfig(text, "serialized");
  ASSERT_TRUE(parsed.ok()) << parsed.status() << "\n" << text;
  ExpectSameConfig(*parsed, original);
  EXPECT_EQ(SerializeModelConfig(*parsed), text);
}

TEST(ModelConfigTest, RoundTripDefaultsAndTheExample) {
  ModelConfig defaults;
  defaults.encoder_layers = {LayerConfig{8, 2048, 512}};
  defaults.decoder_layers = {LayerConfig{8, 2048, 512}};
  absl::StatusOr<ModelConfig> parsed = ParseModelConfig(SerializeModelConfig(defaults), "d");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ExpectSameConfig(*parsed, defaults);

  absl::StatusOr<ModelConfig> example = Parse(ExampleJson());
  ASSERT_TRUE(example.ok());
  const std::string text = SerializeModelConfig(*example);
  absl::StatusOr<ModelConfig> again = ParseModelConfig(text, "e");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(SerializeModelConfig(*again), text);
}

TEST(ModelConfigTest, SerializerWritesListFormWithExplicitAttentionDim) {
  ModelConfig config;
  config.d_model = 256;
  config.encoder_layers = {LayerConfig{4, 1024, 0}};
  config.decoder_layers = {LayerConfig{4, 1024, 0}};
  const Json json = Json::parse(SerializeModelConfig(config));
  EXPECT_EQ(json["architecture"]["encoder"]["layers"][0]["attention_dim"], 256);
  EXPECT_FALSE(json["architecture"]["encoder"].contains("num_layers"));
  EXPECT_EQ(json["format"], "quantmt");
  EXPECT_EQ(json["format_version"], kCheckpointFormatVersion);
  // layer_norm_eps is written as the shortest decimal, not 9.99999974e-06.
  EXPECT_NE(SerializeModelConfig(config).find("\"layer_norm_eps\": 1e-05"), std::string::npos);
}

TEST(ModelConfigTest, LayerNormEpsRoundTripsExactly) {
  ModelConfig config = UnusualConfig();
  for (float eps : {1e-5f, 1e-6f, 1e-12f, 3.14159e-7f, 0.1f, 1.0f, 1.17549435e-38f}) {
    config.layer_norm_eps = eps;
    absl::StatusOr<ModelConfig> parsed = ParseModelConfig(SerializeModelConfig(config), "eps");
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    EXPECT_EQ(parsed->layer_norm_eps, eps);
  }
}

TEST(ModelConfigTest, ShorthandExpandsToUniformLayers) {
  Json json = ExampleJson();
  json["architecture"]["encoder"] = {{"num_layers", 6}, {"heads", 16}, {"ffn_dim", 4096}};
  absl::StatusOr<ModelConfig> config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  ASSERT_EQ(config->encoder_layers.size(), 6u);
  for (const LayerConfig& layer : config->encoder_layers) {
    EXPECT_EQ(layer.heads, 16);
    EXPECT_EQ(layer.ffn_dim, 4096);
    EXPECT_EQ(layer.attention_dim, 0);
  }
}

TEST(ModelConfigTest, MinimalConfigGetsDefaults) {
  const Json json = Json::parse(R"({
    "format": "quantmt", "format_version": 1,
    "architecture": {"d_model": 64,
                     "encoder": {"num_layers": 1, "heads": 2, "ffn_dim": 128},
                     "decoder": {"num_layers": 1, "heads": 2, "ffn_dim": 128}},
    "vocab": {"source_size": 100, "target_size": 100}
  })");
  absl::StatusOr<ModelConfig> config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  const ModelConfig defaults;
  EXPECT_EQ(config->norm, defaults.norm);
  EXPECT_EQ(config->layer_norm_eps, defaults.layer_norm_eps);
  EXPECT_EQ(config->weights_file, defaults.weights_file);
  EXPECT_EQ(config->weights_dtype, defaults.weights_dtype);
  EXPECT_EQ(config->eos_id, defaults.eos_id);
  EXPECT_EQ(config->quantization.scheme, "none");
  EXPECT_EQ(config->provenance_json, "{}");
}

TEST(ModelConfigTest, QuantizationParamsAndProvenanceKeptVerbatim) {
  Json json = ExampleJson();
  json["provenance"] = Json::parse(R"({"z": 1, "a": {"nested": [1, "two", null]}})");
  json["quantization"] = Json::parse(R"({"scheme": "none", "zz": 3, "aa": {"b": 1}})");
  absl::StatusOr<ModelConfig> config = Parse(json);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->provenance_json, R"({"z":1,"a":{"nested":[1,"two",null]}})");
  EXPECT_EQ(config->quantization.params_json, R"({"zz":3,"aa":{"b":1}})");
  const Json out = Json::parse(SerializeModelConfig(*config));
  EXPECT_EQ(out["quantization"], json["quantization"]);
  EXPECT_EQ(out["provenance"], json["provenance"]);
}

TEST(ModelConfigTest, KnownQuantizationSchemes) {
  EXPECT_TRUE(IsKnownQuantizationScheme("none"));
  EXPECT_TRUE(IsKnownQuantizationScheme("int8_dynamic"));
  EXPECT_TRUE(IsKnownQuantizationScheme("int8_static"));
  EXPECT_TRUE(IsKnownQuantizationScheme("daq"));
  EXPECT_FALSE(IsKnownQuantizationScheme("int8"));
  EXPECT_FALSE(IsKnownQuantizationScheme(""));
}

// ------------------------------------------------------------ bad configs

TEST(ModelConfigTest, NotJson) {
  ExpectError(ParseModelConfig("{\"format\": \"quantmt\",\n  oops}", kOrigin).status(),
              absl::StatusCode::kInvalidArgument, {kOrigin, "not valid JSON", "line 2"});
  ExpectError(ParseModelConfig("", kOrigin).status(), absl::StatusCode::kInvalidArgument,
              {kOrigin, "not valid JSON"});
}

TEST(ModelConfigTest, NotAnObject) { ExpectInvalid(Json::array({1, 2}), {"top level", "array"}); }

TEST(ModelConfigTest, WrongFormat) {
  Json json = ExampleJson();
  json["format"] = "fairseq";
  ExpectInvalid(json, {"format: expected \"quantmt\""});
  json.erase("format");
  ExpectInvalid(json, {"format: missing"});
}

TEST(ModelConfigTest, UnsupportedVersion) {
  Json json = ExampleJson();
  json["format_version"] = 2;
  ExpectInvalid(json, {"format_version: version 2 is not supported", "this build reads version 1"});
  json.erase("format_version");
  ExpectInvalid(json, {"format_version: missing"});
  ModelConfig config = UnusualConfig();
  config.format_version = 0;
  ExpectError(ValidateModelConfig(config, "v"), absl::StatusCode::kInvalidArgument,
              {"v: format_version: version 0 is not supported"});
}

TEST(ModelConfigTest, MissingDModel) {
  Json json = ExampleJson();
  json["architecture"].erase("d_model");
  ExpectInvalid(json, {"architecture.d_model: missing", "positive integer"});
}

TEST(ModelConfigTest, DModelWrongType) {
  for (const Json& value : {Json("512"), Json(512.5), Json(true), Json(nullptr),
                            Json(int64_t{1} << 40), Json::array()}) {
    Json json = ExampleJson();
    json["architecture"]["d_model"] = value;
    ExpectInvalid(json, {"architecture.d_model: expected a positive integer, got"});
  }
}

TEST(ModelConfigTest, DModelNotPositive) {
  for (int d_model : {0, -512}) {
    Json json = ExampleJson();
    json["architecture"]["d_model"] = d_model;
    ExpectInvalid(json, {"architecture.d_model: expected an integer in [1, "});
  }
}

TEST(ModelConfigTest, MissingRequiredSections) {
  for (const char* key : {"architecture", "vocab"}) {
    Json json = ExampleJson();
    json.erase(key);
    ExpectInvalid(json, {std::string(key) + ": missing"});
  }
  for (const char* key : {"encoder", "decoder"}) {
    Json json = ExampleJson();
    json["architecture"].erase(key);
    ExpectInvalid(json, {std::string("architecture.") + key + ": missing"});
  }
  for (const char* key : {"source_size", "target_size"}) {
    Json json = ExampleJson();
    json["vocab"].erase(key);
    ExpectInvalid(json, {std::string("vocab.") + key + ": missing"});
  }
}

TEST(ModelConfigTest, HeadsMustDivideAttentionDim) {
  Json json = ExampleJson();
  json["architecture"]["encoder"]["layers"][1]["heads"] = 5;
  ExpectInvalid(
      json, {"architecture.encoder.layers[1].heads", "5 heads do not divide", "attention_dim 256"});
  // attention_dim 0 means d_model.
  json = ExampleJson();
  json["architecture"]["decoder"]["heads"] = 7;
  ExpectInvalid(json, {"architecture.decoder.layers[0].heads", "(= d_model)"});
}

TEST(ModelConfigTest, LayerFieldsChecked) {
  Json json = ExampleJson();
  json["architecture"]["encoder"]["layers"][0]["heads"] = 0;
  ExpectInvalid(json, {"architecture.encoder.layers[0].heads: expected an integer in [1, "});
  json = ExampleJson();
  json["architecture"]["encoder"]["layers"][0].erase("ffn_dim");
  ExpectInvalid(json, {"architecture.encoder.layers[0].ffn_dim: missing"});
  json = ExampleJson();
  json["architecture"]["encoder"]["layers"][0]["attention_dim"] = -8;
  ExpectInvalid(json, {"architecture.encoder.layers[0].attention_dim"});
  json = ExampleJson();
  json["architecture"]["encoder"]["layers"][0]["dropout"] = 0.1;
  ExpectInvalid(json, {"architecture.encoder.layers[0].dropout: unknown key"});
  json = ExampleJson();
  json["architecture"]["encoder"]["layers"][0] = 8;
  ExpectInvalid(json, {"architecture.encoder.layers[0]: expected an object"});
  json = ExampleJson();
  json["architecture"]["encoder"]["layers"] = "six";
  ExpectInvalid(json, {"architecture.encoder.layers: expected a list"});
}

TEST(ModelConfigTest, LayerCountChecked) {
  Json json = ExampleJson();
  json["architecture"]["encoder"]["layers"] = Json::array();
  ExpectInvalid(json, {"architecture.encoder: expected 1 to 1024 layers, got 0"});
  for (int num_layers : {0, -1, 100000}) {
    json = ExampleJson();
    json["architecture"]["decoder"]["num_layers"] = num_layers;
    ExpectInvalid(json, {"architecture.decoder.num_layers: expected an integer in [1, 1024]"});
  }
  json = ExampleJson();
  json["architecture"]["decoder"]["layers"] = Json::array();
  ExpectInvalid(json, {"architecture.decoder", "either 'layers'"});
  json = ExampleJson();
  json["architecture"]["encoder"] = Json::object();
  ExpectInvalid(json, {"architecture.encoder", "either 'layers'"});
  ModelConfig config = UnusualConfig();
  config.decoder_layers.clear();
  ExpectError(ValidateModelConfig(config, "c"), absl::StatusCode::kInvalidArgument,
              {"c: architecture.decoder: expected 1 to 1024 layers"});
}

TEST(ModelConfigTest, SharedEmbeddingsNeedEqualVocabularies) {
  Json json = ExampleJson();
  json["vocab"]["target_size"] = 9000;
  ExpectInvalid(json, {"architecture.shared_embeddings", "8000", "9000"});
  json["architecture"]["shared_embeddings"] = false;
  EXPECT_TRUE(Parse(json).ok());
}

TEST(ModelConfigTest, VocabSizesPositive) {
  Json json = ExampleJson();
  json["vocab"]["source_size"] = 0;
  ExpectInvalid(json, {"vocab.source_size: expected an integer in [1, "});
}

TEST(ModelConfigTest, SpecialIdsInsideVocabulary) {
  Json json = ExampleJson();
  json["vocab"]["eos_id"] = 8000;
  ExpectInvalid(json, {"vocab.eos_id: 8000 is outside the vocabulary [0, 8000)"});
  json = ExampleJson();
  json["vocab"]["unk_id"] = -1;
  ExpectInvalid(json, {"vocab.unk_id", "-1"});
  // Ids must fit the smaller vocabulary: both sides use them.
  json = ExampleJson();
  json["architecture"]["shared_embeddings"] = false;
  json["vocab"]["target_size"] = 100;
  json["vocab"]["bos_id"] = 500;
  ExpectInvalid(json, {"vocab.bos_id: 500 is outside the vocabulary [0, 100)"});
}

TEST(ModelConfigTest, SpecialIdsDistinct) {
  Json json = ExampleJson();
  json["vocab"]["bos_id"] = 3;
  ExpectInvalid(json, {"vocab: pad_id, bos_id and eos_id must differ"});
  json = ExampleJson();
  json["vocab"]["pad_id"] = 2;
  ExpectInvalid(json, {"vocab: pad_id, bos_id and eos_id must differ"});
}

TEST(ModelConfigTest, MaxPositionsPositive) {
  Json json = ExampleJson();
  json["architecture"]["max_target_positions"] = 0;
  ExpectInvalid(json, {"architecture.max_target_positions: expected an integer in [1, "});
}

TEST(ModelConfigTest, LayerNormEpsPositive) {
  for (const Json& value : {Json(0), Json(-1e-5)}) {
    Json json = ExampleJson();
    json["architecture"]["layer_norm_eps"] = value;
    ExpectInvalid(json, {"architecture.layer_norm_eps: expected a positive number"});
  }
  for (const Json& value : {Json("1e-5"), Json(1e300)}) {
    Json json = ExampleJson();
    json["architecture"]["layer_norm_eps"] = value;
    ExpectInvalid(json, {"architecture.layer_norm_eps: expected a positive number, got"});
  }
}

TEST(ModelConfigTest, UnknownEnumStrings) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {"norm", "mid"}, {"activation", "tanh"}, {"positions", "rope"}};
  for (const auto& [key, value] : cases) {
    Json json = ExampleJson();
    json["architecture"][key] = value;
    ExpectInvalid(json, {std::string("architecture.") + key + ": '" + value + "' is not one of"});
  }
  Json json = ExampleJson();
  json["architecture"]["norm"] = 1;
  ExpectInvalid(json, {"architecture.norm: expected a string, got number"});
}

TEST(ModelConfigTest, BooleansMustBeBooleans) {
  Json json = ExampleJson();
  json["architecture"]["scale_embeddings"] = "yes";
  ExpectInvalid(json, {"architecture.scale_embeddings: expected true or false"});
}

TEST(ModelConfigTest, UnknownKeysAreRefused) {
  Json json = ExampleJson();
  json["architecture"]["scale_embedding"] = false;  // typo
  ExpectInvalid(json, {"architecture.scale_embedding: unknown key"});
  json = ExampleJson();
  json["extra"] = 1;
  ExpectInvalid(json, {"extra: unknown key"});
  json = ExampleJson();
  json["vocab"]["sep_id"] = 4;
  ExpectInvalid(json, {"vocab.sep_id: unknown key"});
}

TEST(ModelConfigTest, WeightsDtype) {
  Json json = ExampleJson();
  json["weights"]["dtype"] = "int8";
  ExpectInvalid(json, {"weights.dtype: 'int8' is not one of float32, float16, bfloat16"});
  for (const char* dtype : {"float16", "bfloat16"}) {
    json["weights"]["dtype"] = dtype;
    EXPECT_TRUE(Parse(json).ok()) << dtype;
  }
}

TEST(ModelConfigTest, FilesStayInsideTheModelDirectory) {
  for (const char* file : {"/etc/passwd", "../other/model.safetensors", "a/../../b", ""}) {
    Json json = ExampleJson();
    json["weights"]["file"] = file;
    ExpectInvalid(json, {"weights.file", "inside the model directory"});
  }
  Json json = ExampleJson();
  json["tokenizer"]["target"] = "/abs/spm.model";
  ExpectInvalid(json, {"tokenizer.target", "inside the model directory"});
}

TEST(ModelConfigTest, TokenizerTypeChecked) {
  Json json = ExampleJson();
  json["tokenizer"]["type"] = "bpe";
  ExpectInvalid(json, {"tokenizer.type: 'bpe' is not supported"});
}

TEST(ModelConfigTest, UnknownQuantizationScheme) {
  Json json = ExampleJson();
  json["quantization"] = {{"scheme", "xyz"}, {"bits", 4}};
  ExpectError(Parse(json).status(), absl::StatusCode::kInvalidArgument,
              {std::string(kOrigin) + ": quantization.scheme 'xyz' is not supported (known: none, "
                                      "int8_dynamic, int8_static, daq)"});
  json["quantization"] = {{"bits", 4}};
  ExpectInvalid(json, {"quantization.scheme: missing"});
  json["quantization"] = "none";
  ExpectInvalid(json, {"quantization: expected an object"});
}

TEST(ModelConfigTest, QuantizationParamsValidated) {
  ModelConfig config = UnusualConfig();
  config.quantization.params_json = "[1]";
  ExpectError(ValidateModelConfig(config, "q"), absl::StatusCode::kInvalidArgument,
              {"q: quantization: parameters must be a JSON object"});
  config.quantization.params_json = R"({"scheme": "none"})";
  ExpectError(ValidateModelConfig(config, "q"), absl::StatusCode::kInvalidArgument,
              {"q: quantization"});
}

TEST(ModelConfigTest, ProvenanceMustBeAnObject) {
  Json json = ExampleJson();
  json["provenance"] = "trained on a Tuesday";
  ExpectInvalid(json, {"provenance: expected an object"});
  // A config built in code with bad provenance serializes to something that
  // does not parse back silently.
  ModelConfig config = UnusualConfig();
  config.provenance_json = "not json";
  ExpectError(ValidateModelConfig(config, "p"), absl::StatusCode::kInvalidArgument,
              {"p: provenance"});
  EXPECT_FALSE(ParseModelConfig(SerializeModelConfig(config), "p").ok());
}

TEST(ModelConfigTest, DeepNestingRefused) {
  Json json = ExampleJson();
  std::string text = json.dump();
  const std::string deep = std::string(100000, '[') + std::string(100000, ']');
  text.replace(text.find("\"wmt14\""), 7, deep);
  ExpectError(ParseModelConfig(text, kOrigin).status(), absl::StatusCode::kInvalidArgument,
              {kOrigin, "nested deeper"});
}

// Every prefix of a valid config is either refused or valid; nothing throws.
TEST(ModelConfigTest, TruncationsNeverThrow) {
  const std::string text = SerializeModelConfig(UnusualConfig());
  // Cutting only the trailing newline leaves a valid config.
  const size_t end = text.find_last_not_of(" \n") + 1;
  for (size_t size = 0; size < end; ++size) {
    absl::StatusOr<ModelConfig> config = ParseModelConfig(text.substr(0, size), "cut");
    EXPECT_FALSE(config.ok()) << size;
  }
}

// ------------------------------------------------------------ ReadModelConfig

class ReadModelConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "model_config_test.XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << std::strerror(errno);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
  void Write(const std::string& text) {
    std::ofstream out(dir_ + "/config.json", std::ios::binary);
    out << text;
  }
  std::string dir_;
};

TEST_F(ReadModelConfigTest, ReadsConfigJson) {
  Write(SerializeModelConfig(UnusualConfig()));
  absl::StatusOr<ModelConfig> config = ReadModelConfig(dir_);
  ASSERT_TRUE(config.ok()) << config.status();
  ExpectSameConfig(*config, UnusualConfig());
  EXPECT_TRUE(ReadModelConfig(dir_ + "/").ok());
}

TEST_F(ReadModelConfigTest, MissingFileIsNotFound) {
  ExpectError(ReadModelConfig(dir_).status(), absl::StatusCode::kNotFound, {dir_ + "/config.json"});
}

TEST_F(ReadModelConfigTest, ErrorsNameThePath) {
  Json json = ExampleJson();
  json["quantization"]["scheme"] = "xyz";
  Write(json.dump());
  ExpectError(ReadModelConfig(dir_).status(), absl::StatusCode::kInvalidArgument,
              {dir_ + "/config.json: quantization.scheme 'xyz'"});
}

TEST_F(ReadModelConfigTest, DirectoryIsRefused) {
  std::filesystem::create_directory(dir_ + "/config.json");
  ExpectError(ReadModelConfig(dir_).status(), absl::StatusCode::kInvalidArgument,
              {dir_ + "/config.json", "not a regular file"});
}

TEST_F(ReadModelConfigTest, OversizedFileIsRefused) {
  Write(std::string(17 << 20, ' '));
  ExpectError(ReadModelConfig(dir_).status(), absl::StatusCode::kInvalidArgument,
              {dir_ + "/config.json", "limit"});
}

}  // namespace
}  // namespace quantmt
