#include "train/compress/qat.h"

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "model/model_io.h"
#include "quantmt/engine/tokenizer.h"
#include "train/common/data.h"
#include "train/compress/int8_static_export.h"

namespace quantmt::train {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

// A few shuffled batches drawn from the first lines of every training file,
// so that each corpus of a mix contributes to the calibration.
absl::StatusOr<std::vector<Batch>> CalibrationBatches(const QatOptions& qat,
                                                      const TrainerOptions& trainer,
                                                      const ModelConfig& config) {
  std::string error;
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::Load(trainer.tokenizer_path, &error);
  if (tokenizer == nullptr) return absl::InvalidArgumentError(error);
  const size_t files = trainer.train_source_files.size();
  CorpusOptions corpus;
  corpus.max_len = std::min(config.max_source_positions, config.max_target_positions);
  if (trainer.max_len > 0) corpus.max_len = std::min(corpus.max_len, trainer.max_len);
  corpus.max_pair_tokens = trainer.max_tokens;
  corpus.max_lines = std::max<int64_t>(1, (qat.calibration_lines + files - 1) / files);
  std::vector<Example> examples;
  for (size_t i = 0; i < files; ++i) {
    CorpusStats stats;
    ASSIGN_OR_RETURN(std::vector<Example> part, LoadParallelCorpus({trainer.train_source_files[i]},
                                                                   {trainer.train_target_files[i]},
                                                                   *tokenizer, corpus, &stats));
    examples.insert(examples.end(), part.begin(), part.end());
  }
  BatchingOptions batching;
  batching.max_tokens = trainer.max_tokens;
  const auto all = MakeBatches(examples, batching, trainer.seed, /*epoch=*/1);
  std::vector<Batch> batches;
  const SpecialIds ids{config.pad_id, config.bos_id, config.eos_id};
  for (size_t i = 0; i < all.size() && static_cast<int64_t>(i) < qat.calibration_batches; ++i) {
    batches.push_back(Collate(examples, all[i], ids));
  }
  return batches;
}

// "2026-11-23T19:00:00Z"
std::string UtcNow() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char buffer[32];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return buffer;
}

// The config.json quantization parameters: the format's own switches, then
// how the checkpoint was made.
std::string QuantizationParams(const QatOptions& qat, const TrainerOptions& trainer,
                               const ModelConfig& source) {
  Json data = Json::array();
  for (size_t i = 0; i < trainer.train_source_files.size(); ++i) {
    data.push_back(
        {{"source", trainer.train_source_files[i]}, {"target", trainer.train_target_files[i]}});
  }
  const Json source_provenance = Json::parse(source.provenance_json, nullptr, false);
  Json params = {
      {"quantize_embeddings", qat.fake_quant.quantize_embeddings},
      {"quantize_output_projection", qat.fake_quant.quantize_output_projection},
      {"weights", "int8 per output row, symmetric, |q| <= 127"},
      {"activations", "int8 per tensor, symmetric, scale = observed max|x| / 127"},
      {"source_model", qat.model_dir},
      {"tool", "quantmt-qat"},
      {"created", UtcNow()},
      {"calibration",
       {{"data", data},
        {"lines", qat.calibration_lines},
        {"batches", qat.calibration_batches},
        {"observer",
         absl::StrCat("moving average of per-batch max|x| (momentum ", qat.fake_quant.ema_momentum,
                      "), kept up to date during training")}}},
      {"qat",
       {{"data", data},
        {"max_steps", trainer.max_steps},
        {"max_epochs", trainer.max_epochs},
        {"lr", trainer.lr},
        {"warmup", trainer.warmup},
        {"max_tokens", trainer.max_tokens},
        {"seed", trainer.seed},
        {"averaged_checkpoints", trainer.average_last}}},
  };
  if (source_provenance.is_object() && source_provenance.contains("dev_bleu")) {
    params["source_dev_bleu"] = source_provenance["dev_bleu"];
  }
  return params.dump();
}

}  // namespace

absl::Status CopyParametersByName(torch::nn::Module& source, torch::nn::Module& target) {
  const auto from = source.named_parameters();
  torch::NoGradGuard no_grad;
  for (auto& item : target.named_parameters()) {
    const torch::Tensor* value = from.find(item.key());
    if (value == nullptr || !value->sizes().equals(item.value().sizes())) {
      return absl::InvalidArgumentError(
          absl::StrCat("parameter '", item.key(), "' is missing or has another shape"));
    }
    item.value().copy_(*value);
  }
  return absl::OkStatus();
}

void ObserveBatches(Transformer& model, const std::vector<Batch>& batches,
                    const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const bool was_training = model.is_training();
  model.to(device);
  model.train();
  model.set_dropout(DropoutConfig{});
  for (const Batch& batch : batches) {
    const Batch on_device = batch.To(device);
    model.Forward(on_device.source, on_device.target_in);
  }
  model.train(was_training);
}

absl::Status ConfigureQat(const QatOptions& qat, TrainerOptions* trainer) {
  if (qat.model_dir.empty()) return absl::InvalidArgumentError("no model directory to fine-tune");
  ASSIGN_OR_RETURN(ModelConfig source, ReadModelConfig(qat.model_dir));
  if (source.quantization.scheme != "none") {
    return absl::InvalidArgumentError(absl::StrCat(qat.model_dir, " is already quantized (",
                                                   source.quantization.scheme,
                                                   "); QAT starts from a floating-point model"));
  }
  if (source.source_tokenizer != source.target_tokenizer) {
    return absl::InvalidArgumentError(
        absl::StrCat(qat.model_dir, " has a tokenizer per side; the trainer takes one"));
  }
  if (source.tie_output_projection &&
      qat.fake_quant.quantize_embeddings != qat.fake_quant.quantize_output_projection) {
    return absl::InvalidArgumentError(
        "the output projection of this model is its embedding table: quantize both or neither");
  }
  if (trainer->export_dtype != "float32") {
    return absl::InvalidArgumentError(
        "int8_static keeps its scales and other floating-point tensors in float32: use "
        "--export_dtype float32");
  }
  if (!(qat.fake_quant.ema_momentum > 0.0 && qat.fake_quant.ema_momentum <= 1.0)) {
    return absl::InvalidArgumentError("the observer momentum must be in (0, 1]");
  }
  if (qat.calibration_batches < 0 || qat.calibration_lines < 1) {
    return absl::InvalidArgumentError(
        "calibration needs batches >= 0 and lines >= 1 (0 batches: observe from training)");
  }

  trainer->model = source;
  trainer->model.weights_dtype = "float32";
  trainer->model.provenance_json = "{}";
  trainer->tokenizer_path = (fs::path(qat.model_dir) / source.source_tokenizer).string();
  trainer->make_linear = FakeQuantLinearFactory(qat.fake_quant);

  const TrainerOptions options = *trainer;  // the hooks keep what they need
  std::ostream* log = trainer->log != nullptr ? trainer->log : &std::cerr;
  trainer->prepare_model = [qat, options, log](Transformer& model) -> absl::Status {
    ASSIGN_OR_RETURN(std::shared_ptr<Transformer> fp, LoadTransformer(qat.model_dir));
    RETURN_IF_ERROR(CopyParametersByName(*fp, model));
    if (qat.calibration_batches == 0) return absl::OkStatus();
    ASSIGN_OR_RETURN(std::vector<Batch> batches, CalibrationBatches(qat, options, model.config()));
    int64_t tokens = 0;
    for (const Batch& batch : batches) tokens += batch.source_tokens + batch.target_tokens;
    ObserveBatches(model, batches, torch::Device(options.device));
    *log << "qat: weights from " << qat.model_dir << "; observers calibrated on " << batches.size()
         << " batches (" << tokens << " tokens)" << std::endl;
    return absl::OkStatus();
  };
  trainer->export_model = [qat, options, source](Transformer& trained, ModelConfig* exported)
      -> absl::StatusOr<std::shared_ptr<Transformer>> {
    exported->quantization.scheme = "int8_static";
    exported->quantization.params_json = QuantizationParams(qat, options, source);
    exported->weights_dtype = "float32";
    // Through a directory and the engine's loader: the model validated and
    // saved is the one a server would load.
    const fs::path dir = fs::path(options.output_dir) / ".int8_static.tmp";
    std::error_code error;
    fs::remove_all(dir, error);
    RETURN_IF_ERROR(WriteInt8StaticModel(trained, *exported, dir.string()));
    auto served = LoadTransformer(dir.string());
    fs::remove_all(dir, error);
    return served;
  };
  return absl::OkStatus();
}

}  // namespace quantmt::train
