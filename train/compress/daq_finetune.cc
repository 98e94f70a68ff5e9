#include "train/compress/daq_finetune.h"

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "model/daq_linear.h"
#include "model/model_io.h"
#include "train/compress/daq_quantizer.h"

namespace quantmt::compress {
namespace {

namespace fs = std::filesystem;

struct Stage {
  std::string name;
  std::vector<std::string> roles;  // quantized during this stage
  size_t recipe_index;             // 0-3: which of the recipe's steps counts
};

// The recipe's order; roles the parameters leave float drop out, and so does
// a stage that would add none.
std::vector<Stage> Stages(const DaqParams& params) {
  const std::vector<std::vector<std::string>> added = {
      {}, {"feed_forward"}, {"embedding", "output_projection"}, {"attention"}};
  const char* names[] = {"quant-noise", "feed-forward", "embedding", "attention"};
  std::vector<Stage> stages;
  std::vector<std::string> roles;
  for (size_t i = 0; i < added.size(); ++i) {
    bool grew = false;
    for (const std::string& role : added[i]) {
      if (params.Quantizes(role)) {
        roles.push_back(role);
        grew = true;
      }
    }
    if (i == 0 || grew) stages.push_back({names[i], roles, i});
  }
  return stages;
}

torch::ScalarType FloatType(const std::string& dtype) {
  return dtype == "float16"    ? torch::kFloat16
         : dtype == "bfloat16" ? torch::kBFloat16
                               : torch::kFloat32;
}

// Loads the previous stage's model into `model`: equal tensors are copied,
// layers quantized for the first time get k-means codes of their float weight.
absl::Status PrepareStage(const std::string& previous_dir, const LinearFactory* previous_layers,
                          const DaqParams& params, const torch::Device& device, std::ostream& log,
                          Transformer& model) {
  std::shared_ptr<Transformer> previous;
  if (previous_layers != nullptr) {
    ASSIGN_OR_RETURN(previous, LoadTransformer(previous_dir, *previous_layers));
  } else {
    ASSIGN_OR_RETURN(previous, LoadTransformer(previous_dir));
  }
  CopyMatchingTensors(*previous, model);
  const auto previous_parameters = previous->named_parameters();
  uint64_t seed = 1;
  for (const auto& item : model.named_modules()) {
    auto* layer = dynamic_cast<DaqTrainLinear*>(item.value().get());
    if (layer == nullptr || !layer->quantized()) continue;
    const torch::Tensor* weight = previous_parameters.find(item.key() + ".weight");
    if (weight == nullptr) continue;  // quantized already: codes were copied
    layer->QuantizeFrom(weight->to(device), params.kmeans_iterations, seed++);
    log << "quantized " << item.key() << std::endl;
  }
  return absl::OkStatus();
}

// The trained model (DaqTrainLinear layers, all DAQ roles quantized) as the
// engine's DAQ model.
absl::StatusOr<std::shared_ptr<Transformer>> ToEngineModel(Transformer& trained,
                                                           const DaqParams& params,
                                                           const std::string& float_dtype,
                                                           ModelConfig* exported) {
  exported->quantization = {"daq", DaqParamsToJson(params)};
  exported->weights_dtype = float_dtype;
  ASSIGN_OR_RETURN(std::shared_ptr<Transformer> daq, Transformer::Create(*exported));
  CopyMatchingTensors(trained, *daq);
  auto trained_modules = trained.named_modules();
  for (const auto& item : daq->named_modules()) {
    auto* layer = dynamic_cast<DaqLinear*>(item.value().get());
    if (layer == nullptr) continue;
    const auto* source = trained_modules.find(item.key());
    auto* trained_layer =
        source != nullptr ? dynamic_cast<DaqTrainLinear*>(source->get()) : nullptr;
    if (trained_layer == nullptr || !trained_layer->quantized()) {
      return absl::InternalError(absl::StrCat("layer ", item.key(), " was not quantized"));
    }
    auto centroids = RoundCentroids(trained_layer->centroids().detach().cpu(),
                                    params.centroid_dtype, float_dtype);
    layer->SetCodes(centroids, trained_layer->assignments().cpu(),
                    trained_layer->bucket_offsets().cpu(), FloatType(float_dtype));
  }
  return daq;
}

}  // namespace

absl::StatusOr<std::string> RunDaqFinetune(const DaqFinetuneOptions& options) {
  std::ostream& log = options.trainer.log != nullptr ? *options.trainer.log : std::cerr;
  if (options.stage_steps.size() != 4) {
    return absl::InvalidArgumentError("need the steps of 4 stages");
  }
  for (int64_t steps : options.stage_steps) {
    if (steps < 1) return absl::InvalidArgumentError("every stage needs at least 1 step");
  }
  if (!(options.noise.rate >= 0.0 && options.noise.rate <= 1.0)) {
    return absl::InvalidArgumentError("the Quant-Noise rate must be in [0, 1]");
  }
  ASSIGN_OR_RETURN(ModelConfig source_config, ReadModelConfig(options.model_dir));
  if (source_config.quantization.scheme != "none") {
    return absl::InvalidArgumentError(
        absl::StrCat(options.model_dir, " is already quantized; start from a float model"));
  }
  const torch::Device device =
      options.trainer.device == "cuda" ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);

  // How the result was made, for its config.json.
  DaqParams params = options.params;
  params.source_model = options.model_dir;
  nlohmann::json data = nlohmann::json::array();
  for (size_t i = 0; i < options.trainer.train_source_files.size(); ++i) {
    data.push_back({{"source", options.trainer.train_source_files[i]},
                    {"target", options.trainer.train_target_files[i]}});
  }
  params.calibration_data = data.dump();
  const std::vector<Stage> stages = Stages(params);
  nlohmann::json recipe = {{"method", "quant-noise fine-tuning, then staged iPQ"},
                           {"quant_noise_rate", options.noise.rate},
                           {"quant_noise_refresh_steps", options.noise.refresh_steps},
                           {"lr", options.trainer.lr},
                           {"max_tokens", options.trainer.max_tokens},
                           {"seed", options.trainer.seed},
                           {"command_line", options.trainer.command_line}};
  for (const Stage& stage : stages) {
    recipe["stages"].push_back(
        {{"name", stage.name}, {"steps", options.stage_steps[stage.recipe_index]}});
  }
  params.recipe_json = recipe.dump();

  std::string previous_dir = options.model_dir;
  LinearFactory previous_layers;  // empty: the source's own (float) layers
  std::string final_dir;
  for (size_t i = 0; i < stages.size(); ++i) {
    const Stage& stage = stages[i];
    const bool last = i + 1 == stages.size();
    const fs::path stage_dir =
        fs::path(options.trainer.output_dir) / absl::StrCat("stage", i, "-", stage.name);
    LinearFactory layers = DaqTrainFactory(params, stage.roles, options.noise);
    final_dir = (stage_dir / "final").string();
    if (fs::exists(stage_dir / "final" / "config.json")) {
      log << "stage " << i << " (" << stage.name << "): done before, " << final_dir << std::endl;
      previous_dir = final_dir;
      previous_layers = layers;
      continue;
    }
    log << "stage " << i << " (" << stage.name << "): quantized roles [";
    for (const auto& role : stage.roles) log << " " << role;
    log << " ]" << std::endl;

    train::TrainerOptions trainer = options.trainer;
    trainer.output_dir = stage_dir.string();
    if (trainer.tokenizer_path.empty()) {
      trainer.tokenizer_path =
          (fs::path(options.model_dir) / source_config.source_tokenizer).string();
    }
    trainer.model = source_config;
    trainer.max_steps = options.stage_steps[stage.recipe_index];
    trainer.max_epochs = 0;
    trainer.resume = true;
    trainer.make_linear = layers;
    trainer.prepare_model = [previous_dir, previous_layers, params, device,
                             &log](Transformer& model) {
      return PrepareStage(previous_dir, previous_layers ? &previous_layers : nullptr, params,
                          device, log, model);
    };
    if (last) {
      const std::string float_dtype = options.float_dtype;
      trainer.export_dtype = float_dtype;
      trainer.export_model = [params, float_dtype](Transformer& trained, ModelConfig* exported) {
        return ToEngineModel(trained, params, float_dtype, exported);
      };
    } else {
      trainer.export_dtype = "float32";  // intermediate: keep full precision
    }
    ASSIGN_OR_RETURN(auto run, train::Trainer::Create(trainer));
    RETURN_IF_ERROR(run->Train().status());
    ASSIGN_OR_RETURN(final_dir, run->Export());
    previous_dir = final_dir;
    previous_layers = layers;
  }
  return final_dir;
}

}  // namespace quantmt::compress
