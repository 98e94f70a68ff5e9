// Checkpoints: writing one (model, optimizer, trainer state), pruning old
// ones, finding them, averaging them, and resuming from the newest.
#include "train/common/checkpoints.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "model/model_io.h"
#include "train/common/file_util.h"
#include "train/common/optimization.h"
#include "train/common/trainer_impl.h"

namespace quantmt::train {

namespace fs = std::filesystem;

std::vector<std::pair<int64_t, std::string>> ListCheckpoints(const std::string& output_dir) {
  std::vector<std::pair<int64_t, std::string>> found;
  const fs::path root = fs::path(output_dir) / kCheckpointDir;
  std::error_code error;
  if (!fs::is_directory(root, error)) return found;
  for (const auto& entry : fs::directory_iterator(root, error)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind("step_", 0) != 0 || name.size() == 5) continue;
    if (!std::all_of(name.begin() + 5, name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    if (!fs::is_regular_file(entry.path() / kStateFile, error)) continue;
    found.emplace_back(std::stoll(name.substr(5)), entry.path().string());
  }
  std::sort(found.begin(), found.end());
  return found;
}

absl::Status AverageCheckpoints(const std::vector<std::string>& dirs, torch::nn::Module* model,
                                const LinearFactory& make_linear) {
  if (dirs.empty()) return absl::InvalidArgumentError("no checkpoint to average");
  // Floating-point buffers (e.g. observed activation ranges) are averaged too;
  // integer ones (codes of quantized layers) cannot be, and come from the last.
  auto averaged = model->named_parameters();
  torch::OrderedDict<std::string, torch::Tensor> copied;
  for (const auto& item : model->named_buffers()) {
    (item.value().is_floating_point() ? averaged : copied).insert(item.key(), item.value());
  }
  std::vector<torch::Tensor> sums;
  for (const auto& item : averaged) {
    sums.push_back(torch::zeros(item.value().sizes(), torch::kFloat64));
  }
  torch::OrderedDict<std::string, torch::Tensor> loaded_tensors;
  auto find = [&](const std::string& dir, const std::string& name,
                  const torch::Tensor& like) -> absl::StatusOr<const torch::Tensor*> {
    const torch::Tensor* value = loaded_tensors.find(name);
    if (value == nullptr || !value->sizes().equals(like.sizes())) {
      return absl::InvalidArgumentError(
          absl::StrCat(dir, ": tensor '", name, "' is missing or has another shape"));
    }
    return value;
  };
  for (const std::string& dir : dirs) {
    ASSIGN_OR_RETURN(std::shared_ptr<Transformer> loaded,
                     make_linear ? LoadTransformer(dir, make_linear) : LoadTransformer(dir));
    loaded_tensors = loaded->named_parameters();
    for (const auto& item : loaded->named_buffers())
      loaded_tensors.insert(item.key(), item.value());
    for (size_t i = 0; i < averaged.size(); ++i) {
      ASSIGN_OR_RETURN(const torch::Tensor* value,
                       find(dir, averaged[i].key(), averaged[i].value()));
      sums[i] += value->to(torch::kFloat64);
    }
  }
  torch::NoGradGuard no_grad;
  const double count = static_cast<double>(dirs.size());
  for (size_t i = 0; i < averaged.size(); ++i) averaged[i].value().copy_(sums[i] / count);
  for (auto& item : copied) {
    ASSIGN_OR_RETURN(const torch::Tensor* value, find(dirs.back(), item.key(), item.value()));
    item.value().copy_(*value);
  }
  return absl::OkStatus();
}

absl::Status Trainer::Impl::SaveCheckpoint() {
  const fs::path root = fs::path(options.output_dir) / kCheckpointDir;
  const std::string name = absl::StrCat("step_", state.step);
  const fs::path written = root / absl::StrCat(".", name, ".tmp");
  RemoveTree(written);
  ModelConfig saved = config;
  saved.weights_dtype = "float32";
  saved.provenance_json =
      nlohmann::json{{"producer", "quantmt-train"}, {"checkpoint_step", state.step}}.dump();
  RETURN_IF_ERROR(SaveModelDirectory(written.string(), saved, *model));
  RETURN_IF_ERROR(CopyFile(options.tokenizer_path, written / kTokenizerFile));
  try {
    torch::save(*optimizer, (written / kOptimizerFile).string());
  } catch (const c10::Error& e) {
    return absl::DataLossError(
        absl::StrCat("cannot save optimizer state: ", e.what_without_backtrace()));
  }
  RETURN_IF_ERROR(WriteTextFile(written / kStateFile, StateToText(state)));
  RETURN_IF_ERROR(ReplaceDirectory(written, root / name));
  last_saved_step = state.step;

  auto checkpoints = ListCheckpoints(options.output_dir);
  for (size_t i = 0; i + options.keep_checkpoints < checkpoints.size(); ++i) {
    RemoveTree(checkpoints[i].second);
  }
  Log(absl::StrCat("saved ", (root / name).string()));
  return absl::OkStatus();
}

absl::Status Trainer::Impl::Restore(const std::string& dir) {
  if (options.make_linear) {
    ASSIGN_OR_RETURN(model, LoadTransformer(dir, options.make_linear));
  } else {
    ASSIGN_OR_RETURN(model, LoadTransformer(dir));
  }
  config = model->config();
  config.weights_dtype = "float32";
  const fs::path state_path = fs::path(dir) / kStateFile;
  ASSIGN_OR_RETURN(std::string text, ReadTextFile(state_path));
  ASSIGN_OR_RETURN(state, StateFromText(text, state_path.string()));
  if (state.seed != options.seed) {
    Log(absl::StrCat("resume: keeping the checkpoint's seed ", state.seed, " (not ", options.seed,
                     ")"));
  }
  // The loss scale belongs to fp16 alone; a resume may switch precision.
  if (options.amp != AmpMode::kFloat16) {
    state.loss_scale = 1.0;
  } else if (state.loss_scale == 1.0) {
    state.loss_scale = kInitialLossScale;
  }
  model->to(device);
  model->train();
  RETURN_IF_ERROR(CreateOptimizer());
  const std::string optimizer_path = (fs::path(dir) / kOptimizerFile).string();
  try {
    torch::load(*optimizer, optimizer_path, device);
  } catch (const c10::Error& e) {
    return absl::DataLossError(absl::StrCat(
        optimizer_path, ": cannot load optimizer state: ", e.what_without_backtrace()));
  }
  last_saved_step = state.step;
  Log(absl::StrCat("resume: ", dir, " (step ", state.step, ", epoch ", state.epoch, ", batch ",
                   state.batch_in_epoch, ")"));
  return absl::OkStatus();
}

}  // namespace quantmt::train
