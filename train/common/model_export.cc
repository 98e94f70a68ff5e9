// The export: averages the last checkpoints into OUTPUT_DIR/final, in the
// export dtype, with its dev BLEU and provenance.
#include "train/common/model_export.h"

#include <torch/version.h>

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "model/model_io.h"
#include "train/common/checkpoints.h"
#include "train/common/file_util.h"
#include "train/common/progress_log.h"
#include "train/common/run_info.h"
#include "train/common/trainer_impl.h"

namespace quantmt::train {

namespace fs = std::filesystem;
using Json = nlohmann::json;

absl::StatusOr<torch::ScalarType> StorageType(const std::string& dtype) {
  if (dtype == "float32") return torch::kFloat32;
  if (dtype == "float16") return torch::kFloat16;
  if (dtype == "bfloat16") return torch::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("export dtype must be float32, float16 or bfloat16, not '", dtype, "'"));
}

std::string Trainer::Impl::Provenance(const Validation* validation,
                                      const std::vector<std::string>& averaged) {
  Json data = Json::array();
  for (size_t i = 0; i < options.train_source_files.size(); ++i) {
    data.push_back(
        {{"source", options.train_source_files[i]}, {"target", options.train_target_files[i]}});
  }
  Json provenance = {
      {"producer", "quantmt-train"},
      {"libtorch", TORCH_VERSION},
      {"train_data", data},
      {"train_pairs", train_stats.kept},
      {"steps", state.step},
      {"epochs", EpochProgress()},
      {"hardware", HardwareDescription(device)},
      {"amp", AmpName(options.amp)},
      {"training_seconds", state.train_seconds},
      {"averaged_checkpoints", averaged},
      {"hyperparameters",
       {{"lr", options.lr},
        {"warmup", options.warmup},
        {"max_tokens", options.max_tokens},
        {"label_smoothing", options.label_smoothing},
        {"dropout", options.dropout.residual},
        {"attention_dropout", options.dropout.attention},
        {"activation_dropout", options.dropout.activation},
        {"clip_norm", options.clip_norm},
        {"seed", state.seed}}},
      {"command_line", options.command_line},
  };
  if (validation != nullptr) {
    provenance["dev_data"] = {{"source", options.dev_source_file},
                              {"target", options.dev_target_file},
                              {"lines", dev.sources.size()}};
    provenance["dev_bleu"] = validation->bleu.score;
    provenance["dev_bleu_beam"] = options.beam;
    provenance["dev_bleu_signature"] = validation->bleu.signature;
    provenance["dev_nll"] = validation->nll;
  }
  return provenance.dump();
}

absl::StatusOr<std::string> Trainer::Impl::Export() {
  const auto checkpoints = ListCheckpoints(options.output_dir);
  if (checkpoints.empty()) return absl::FailedPreconditionError("no checkpoint to export");
  const size_t count = std::min<size_t>(options.average_last, checkpoints.size());
  std::vector<std::string> dirs, names;
  for (size_t i = checkpoints.size() - count; i < checkpoints.size(); ++i) {
    dirs.push_back(checkpoints[i].second);
    names.push_back(fs::path(checkpoints[i].second).filename().string());
  }
  ASSIGN_OR_RETURN(std::shared_ptr<Transformer> averaged, CreateModel(config));
  RETURN_IF_ERROR(AverageCheckpoints(dirs, averaged.get(), options.make_linear));
  ModelConfig exported = config;
  if (options.export_model) {
    ASSIGN_OR_RETURN(averaged, options.export_model(*averaged, &exported));
  }
  // Round through the export dtype so the BLEU below is that of the weights
  // as stored, not of their float32 originals.
  ASSIGN_OR_RETURN(torch::ScalarType storage, StorageType(options.export_dtype));
  {
    torch::NoGradGuard no_grad;
    for (auto& p : averaged->parameters()) p.copy_(p.to(storage).to(p.scalar_type()));
  }
  averaged->to(device);
  averaged->eval();
  PrepareForInference(*averaged);  // the serving kernels: BLEU below is the served model's

  Validation validation;
  if (has_dev) {
    ASSIGN_OR_RETURN(validation, Validate(*averaged, options.beam));
    Log(Format("export | averaged %zu checkpoints | dev BLEU %.2f (beam %d, %s weights) | %.1fs",
               count, validation.bleu.score, options.beam, options.export_dtype.c_str(),
               validation.seconds));
    Log("export | " + validation.bleu.ToString());
  }
  exported.weights_dtype = options.export_dtype;
  exported.provenance_json = Provenance(has_dev ? &validation : nullptr, names);
  const fs::path final_dir = fs::path(options.output_dir) / "final";
  const fs::path written = fs::path(options.output_dir) / ".final.tmp";
  RemoveTree(written);
  RETURN_IF_ERROR(SaveModelDirectory(written.string(), exported, *averaged));
  RETURN_IF_ERROR(CopyFile(options.tokenizer_path, written / kTokenizerFile));
  RETURN_IF_ERROR(ReplaceDirectory(written, final_dir));
  Log("exported " + final_dir.string());
  return final_dir.string();
}

}  // namespace quantmt::train
