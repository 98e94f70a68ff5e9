#include "train/common/trainer.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numeric>
#include <sstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "decoding/search.h"
#include "eval/bleu.h"
#include "model/model_io.h"

namespace quantmt::train {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr char kCheckpointDir[] = "checkpoints";
constexpr char kStateFile[] = "trainer_state.json";
constexpr char kOptimizerFile[] = "optimizer.pt";
constexpr char kTokenizerFile[] = "spm.model";
// Non-finite gradients in a row before giving up (fp16 overflows excepted:
// those only lower the loss scale).
constexpr int kMaxSkippedSteps = 10;
// fp16: the loss scale starts here, halves on overflow and doubles after
// this many steps without one (as torch.cuda.amp.GradScaler does).
constexpr double kInitialLossScale = 65536.0;
constexpr int64_t kLossScaleGrowthInterval = 2000;

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

std::string FormatDuration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  char buffer[32];
  if (s >= 3600) {
    std::snprintf(buffer, sizeof(buffer), "%ldh%02ldm", static_cast<long>(s / 3600),
                  static_cast<long>(s / 60 % 60));
  } else if (s >= 60) {
    std::snprintf(buffer, sizeof(buffer), "%ldm%02lds", static_cast<long>(s / 60),
                  static_cast<long>(s % 60));
  } else {
    std::snprintf(buffer, sizeof(buffer), "%lds", static_cast<long>(s));
  }
  return buffer;
}

// printf-style formatting for log lines (Debian's Abseil has no StrFormat
// target linked here, and iostream manipulators are verbose).
template <typename... Args>
std::string Format(const char* format, Args... args) {
  char buffer[512];
  std::snprintf(buffer, sizeof(buffer), format, args...);
  return buffer;
}

absl::Status WriteTextFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::DataLossError(absl::StrCat("cannot write ", path.string()));
  return absl::OkStatus();
}

absl::StatusOr<std::string> ReadTextFile(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

absl::Status CopyFile(const std::string& from, const fs::path& to) {
  std::error_code error;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, error);
  if (error) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot copy ", from, " to ", to.string(), ": ", error.message()));
  }
  return absl::OkStatus();
}

// Removes `path` and everything below it, if it exists. (The pip CUDA
// LibTorch exports an incompatible std::filesystem::remove_all; the link order
// in cmake/QuantmtCompilerOptions.cmake keeps libstdc++'s.)
void RemoveTree(const fs::path& path) {
  std::error_code error;
  fs::remove_all(path, error);
}

// Moves a fully written directory into place, replacing an older one: a
// kill during a save leaves a ".tmp" directory that nothing reads.
absl::Status ReplaceDirectory(const fs::path& written, const fs::path& target) {
  RemoveTree(target);
  std::error_code error;
  fs::rename(written, target, error);
  if (error) {
    return absl::PermissionDeniedError(absl::StrCat("cannot move ", written.string(), " to ",
                                                    target.string(), ": ", error.message()));
  }
  return absl::OkStatus();
}

std::string AmpName(AmpMode amp) {
  switch (amp) {
    case AmpMode::kBFloat16:
      return "bf16";
    case AmpMode::kFloat16:
      return "fp16";
    case AmpMode::kNone:
      break;
  }
  return "none";
}

absl::StatusOr<torch::ScalarType> StorageType(const std::string& dtype) {
  if (dtype == "float32") return torch::kFloat32;
  if (dtype == "float16") return torch::kFloat16;
  if (dtype == "bfloat16") return torch::kBFloat16;
  return absl::InvalidArgumentError(
      absl::StrCat("export dtype must be float32, float16 or bfloat16, not '", dtype, "'"));
}

// First line of a command's output, or "" (best effort, for provenance).
std::string CommandOutput(const char* command) {
  FILE* pipe = popen(command, "r");
  if (pipe == nullptr) return "";
  char buffer[256] = {0};
  std::string line = fgets(buffer, sizeof(buffer), pipe) != nullptr ? buffer : "";
  pclose(pipe);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  return line;
}

// "cpu: <model name>, N threads" or "cuda: <GPU name>", for the provenance.
std::string HardwareDescription(const torch::Device& device) {
  if (device.is_cuda()) {
    // No CUDA headers here (the CPU build has none); nvidia-smi names the GPU.
    const std::string gpu =
        CommandOutput("nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null");
    return absl::StrCat("cuda: ", gpu.empty() ? "unknown GPU" : gpu, " (",
                        torch::cuda::device_count(), " visible)");
  }
  std::string cpu = "unknown CPU";
  std::ifstream info("/proc/cpuinfo");
  for (std::string line; std::getline(info, line);) {
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  }
  return absl::StrCat("cpu: ", cpu, ", ", torch::get_num_threads(), " threads");
}

// Autocast for the forward pass on CUDA, off again (and its cast cache
// cleared) when the scope ends. LibTorch 2.4 replaced the CUDA-only calls by
// device-typed ones and deprecated the old names.
class AutocastScope {
 public:
  AutocastScope(bool enabled, torch::ScalarType dtype) : enabled_(enabled) {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
#endif
  }
  ~AutocastScope() {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
    at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
};

// The trainer's own state, saved next to each checkpoint.
struct ValidationRecord {
  int64_t step = 0;
  double epoch = 0;
  double train_loss = 0;
  double dev_loss = 0;
  double dev_nll = 0;
  double dev_bleu = 0;
  double lr = 0;
  double seconds = 0;  // training time so far
};

struct TrainerState {
  int64_t step = 0;
  int64_t epoch = 1;           // epoch in progress, 1-based
  int64_t batch_in_epoch = 0;  // batches of that epoch already consumed
  uint64_t seed = 1;
  double best_bleu = -1.0;
  int64_t best_step = 0;
  int bad_validations = 0;  // since the best BLEU
  bool stopped_early = false;
  double train_seconds = 0;
  double loss_scale = 1.0;
  int64_t good_steps = 0;  // fp16: steps since the last overflow
  std::vector<ValidationRecord> history;
};

Json StateToJson(const TrainerState& state) {
  Json history = Json::array();
  for (const ValidationRecord& r : state.history) {
    history.push_back({{"step", r.step},
                       {"epoch", r.epoch},
                       {"train_loss", r.train_loss},
                       {"dev_loss", r.dev_loss},
                       {"dev_nll", r.dev_nll},
                       {"dev_bleu", r.dev_bleu},
                       {"lr", r.lr},
                       {"seconds", r.seconds}});
  }
  return Json{{"step", state.step},
              {"epoch", state.epoch},
              {"batch_in_epoch", state.batch_in_epoch},
              {"seed", state.seed},
              {"best_bleu", state.best_bleu},
              {"best_step", state.best_step},
              {"bad_validations", state.bad_validations},
              {"stopped_early", state.stopped_early},
              {"train_seconds", state.train_seconds},
              {"loss_scale", state.loss_scale},
              {"good_steps", state.good_steps},
              {"history", history}};
}

absl::StatusOr<TrainerState> StateFromJson(const std::string& text, const std::string& origin) {
  const Json json = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return absl::DataLossError(absl::StrCat(origin, ": not a JSON object"));
  }
  try {
    TrainerState state;
    state.step = json.at("step").get<int64_t>();
    state.epoch = json.at("epoch").get<int64_t>();
    state.batch_in_epoch = json.at("batch_in_epoch").get<int64_t>();
    state.seed = json.at("seed").get<uint64_t>();
    state.best_bleu = json.at("best_bleu").get<double>();
    state.best_step = json.at("best_step").get<int64_t>();
    state.bad_validations = json.at("bad_validations").get<int>();
    state.stopped_early = json.at("stopped_early").get<bool>();
    state.train_seconds = json.at("train_seconds").get<double>();
    state.loss_scale = json.value("loss_scale", 1.0);
    state.good_steps = json.value("good_steps", int64_t{0});
    for (const Json& r : json.at("history")) {
      state.history.push_back({r.at("step").get<int64_t>(), r.at("epoch").get<double>(),
                               r.at("train_loss").get<double>(), r.at("dev_loss").get<double>(),
                               r.at("dev_nll").get<double>(), r.at("dev_bleu").get<double>(),
                               r.at("lr").get<double>(), r.at("seconds").get<double>()});
    }
    if (state.step < 0 || state.epoch < 1 || state.batch_in_epoch < 0) {
      return absl::DataLossError(absl::StrCat(origin, ": negative step or epoch"));
    }
    return state;
  } catch (const Json::exception& e) {
    return absl::DataLossError(absl::StrCat(origin, ": ", e.what()));
  }
}

// Dropout masks of a step depend on (seed, step) only, so a resumed run draws
// the same masks as an uninterrupted one.
uint64_t StepSeed(uint64_t seed, int64_t step) {
  return seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step);
}

struct Validation {
  double loss = 0, nll = 0;  // per target token
  eval::BleuScore bleu;
  double seconds = 0;
};

}  // namespace

// ------------------------------------------------------------- free functions

LossSums LabelSmoothedCrossEntropy(const torch::Tensor& logits, const torch::Tensor& target,
                                   int64_t pad_id, double epsilon) {
  const auto log_probs = torch::log_softmax(logits.to(torch::kFloat), -1);
  const auto nll = -log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1);
  const auto smooth = -log_probs.mean(-1);
  const auto mask = target.ne(pad_id);
  LossSums sums;
  sums.nll = nll.masked_select(mask).sum();
  sums.loss = ((1.0 - epsilon) * nll + epsilon * smooth).masked_select(mask).sum();
  sums.tokens = mask.sum().item<int64_t>();
  return sums;
}

double InverseSqrtLearningRate(double peak, int64_t warmup, int64_t step) {
  const double s = static_cast<double>(std::max<int64_t>(step, 1));
  if (warmup <= 0) return peak / std::sqrt(s);
  const double w = static_cast<double>(warmup);
  return peak * std::min(s / w, std::sqrt(w / s));
}

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

// -------------------------------------------------------------------- Trainer

struct Trainer::Impl {
  TrainerOptions options;
  std::ostream* log = &std::cerr;
  torch::Device device{torch::kCPU};
  std::unique_ptr<Tokenizer> tokenizer;
  SpecialIds ids;
  std::vector<Example> train;
  CorpusStats train_stats;
  bool has_dev = false;
  DevSet dev;
  ModelConfig config;
  std::shared_ptr<Transformer> model;
  std::vector<torch::Tensor> parameters;
  std::unique_ptr<torch::optim::Adam> optimizer;
  TrainerState state;
  int64_t last_saved_step = -1;
  int64_t last_validated_step = -1;
  // The batches of epoch `batches_epoch` (rebuilt when the epoch changes).
  std::vector<std::vector<int64_t>> batches;
  int64_t batches_epoch = 0;

  absl::Status Init();
  absl::StatusOr<std::shared_ptr<Transformer>> CreateModel(const ModelConfig& model_config);
  absl::Status CreateOptimizer();
  absl::Status Restore(const std::string& dir);
  absl::StatusOr<TrainSummary> Train();
  absl::StatusOr<std::string> Export();

  void Log(const std::string& line) { *log << line << std::endl; }
  const std::vector<std::vector<int64_t>>& EpochBatches();
  // One optimizer step; false when it was skipped (non-finite gradients).
  bool Step(const Batch& cpu_batch, double lr, double* loss_sum, double* nll_sum,
            double* grad_norm);
  absl::StatusOr<Validation> Validate(Transformer& net, int beam);
  // Validates, logs and updates the early-stopping state; true: stop.
  absl::StatusOr<bool> ValidateAndTrack(double train_loss, double lr);
  absl::Status SaveCheckpoint();
  double EpochProgress() {
    const auto& b = EpochBatches();
    return static_cast<double>(state.epoch - 1) +
           (b.empty() ? 0.0 : static_cast<double>(state.batch_in_epoch) / b.size());
  }
  // Steps left until max_steps / max_epochs (the nearer), or -1 if unbounded.
  int64_t RemainingSteps();
  std::string Provenance(const Validation* validation, const std::vector<std::string>& averaged);
};

absl::Status Trainer::Impl::Init() {
  if (options.log != nullptr) log = options.log;
  if (options.device == "cuda") {
    if (!torch::cuda::is_available()) {
      return absl::FailedPreconditionError("--device cuda, but no CUDA device is available");
    }
    device = torch::Device(torch::kCUDA);
  } else if (options.device != "cpu") {
    return absl::InvalidArgumentError(absl::StrCat("unknown device '", options.device, "'"));
  }
  if (options.amp != AmpMode::kNone && !device.is_cuda()) {
    return absl::InvalidArgumentError("mixed precision (--amp) needs --device cuda");
  }
  if (options.output_dir.empty()) return absl::InvalidArgumentError("no output directory");
  RETURN_IF_ERROR(StorageType(options.export_dtype).status());
  if (options.keep_checkpoints < 1 || options.average_last < 1 ||
      options.average_last > options.keep_checkpoints) {
    return absl::InvalidArgumentError(
        "need 1 <= average_last <= keep_checkpoints (averaged checkpoints must be kept)");
  }

  std::string error;
  tokenizer = Tokenizer::Load(options.tokenizer_path, &error);
  if (tokenizer == nullptr) return absl::InvalidArgumentError(error);
  if (tokenizer->pad_id() < 0 || tokenizer->bos_id() < 0 || tokenizer->eos_id() < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.tokenizer_path, " lacks pad, bos or eos; train it with quantmt-spm-train"));
  }

  const auto checkpoints = ListCheckpoints(options.output_dir);
  if (!checkpoints.empty() && !options.resume) {
    return absl::AlreadyExistsError(
        absl::StrCat(options.output_dir,
                     " already has checkpoints; pass --resume to continue, "
                     "or choose another output directory"));
  }
  if (!checkpoints.empty()) {
    RETURN_IF_ERROR(Restore(checkpoints.back().second));
  } else {
    if (options.resume) Log("resume: no checkpoint yet, starting from scratch");
    config = options.model;
    config.source_vocab_size = config.target_vocab_size = tokenizer->vocab_size();
    config.pad_id = tokenizer->pad_id();
    config.unk_id = tokenizer->unk_id();
    config.bos_id = tokenizer->bos_id();
    config.eos_id = tokenizer->eos_id();
    config.source_tokenizer = config.target_tokenizer = kTokenizerFile;
    config.weights_dtype = "float32";
    RETURN_IF_ERROR(ValidateModelConfig(config, "model flags"));
    torch::manual_seed(options.seed);
    ASSIGN_OR_RETURN(model, CreateModel(config));
    if (options.prepare_model) RETURN_IF_ERROR(options.prepare_model(*model));
    model->to(device);
    state.seed = options.seed;
    state.loss_scale = options.amp == AmpMode::kFloat16 ? kInitialLossScale : 1.0;
    RETURN_IF_ERROR(CreateOptimizer());
  }
  if (config.source_vocab_size != tokenizer->vocab_size() ||
      config.target_vocab_size != tokenizer->vocab_size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("the model's vocabulary (", config.source_vocab_size, ") is not the size of ",
                     options.tokenizer_path, " (", tokenizer->vocab_size(), ")"));
  }
  ids = {config.pad_id, config.bos_id, config.eos_id};

  const int64_t positions = std::min(config.max_source_positions, config.max_target_positions);
  CorpusOptions corpus;
  corpus.max_len = options.max_len > 0 ? std::min<int64_t>(options.max_len, positions) : positions;
  corpus.max_pair_tokens = options.max_tokens;
  ASSIGN_OR_RETURN(train, LoadParallelCorpus(options.train_source_files, options.train_target_files,
                                             *tokenizer, corpus, &train_stats));
  Log("train: " + train_stats.ToString());
  has_dev = !options.dev_source_file.empty();
  if (has_dev) {
    CorpusStats dev_stats;
    ASSIGN_OR_RETURN(dev, LoadDevSet(options.dev_source_file, options.dev_target_file, *tokenizer,
                                     corpus.max_len, options.dev_lines, &dev_stats));
    Log("dev: " + dev_stats.ToString());
  }
  int64_t parameter_count = 0;
  for (const auto& p : model->parameters()) parameter_count += p.numel();
  Log(absl::StrCat("model: ", parameter_count, " parameters, d_model ", config.d_model, ", ",
                   config.encoder_layers.size(), "+", config.decoder_layers.size(),
                   " layers; device ", HardwareDescription(device), "; amp ",
                   AmpName(options.amp)));
  return absl::OkStatus();
}

absl::Status Trainer::Impl::CreateOptimizer() {
  parameters = model->parameters();
  optimizer = std::make_unique<torch::optim::Adam>(
      parameters, torch::optim::AdamOptions(options.lr).betas({0.9, 0.98}).eps(1e-9));
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Transformer>> Trainer::Impl::CreateModel(
    const ModelConfig& model_config) {
  if (options.make_linear) return Transformer::Create(model_config, options.make_linear);
  return Transformer::Create(model_config);
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
  ASSIGN_OR_RETURN(state, StateFromJson(text, state_path.string()));
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

const std::vector<std::vector<int64_t>>& Trainer::Impl::EpochBatches() {
  if (batches_epoch != state.epoch) {
    BatchingOptions batching;
    batching.max_tokens = options.max_tokens;
    batches = MakeBatches(train, batching, state.seed, state.epoch);
    batches_epoch = state.epoch;
  }
  return batches;
}

int64_t Trainer::Impl::RemainingSteps() {
  int64_t remaining = -1;
  if (options.max_steps > 0) remaining = std::max<int64_t>(0, options.max_steps - state.step);
  if (options.max_epochs > 0) {
    const int64_t per_epoch = static_cast<int64_t>(EpochBatches().size());
    const int64_t by_epochs = std::max<int64_t>(
        0, (options.max_epochs - state.epoch + 1) * per_epoch - state.batch_in_epoch);
    remaining = remaining < 0 ? by_epochs : std::min(remaining, by_epochs);
  }
  return remaining;
}

bool Trainer::Impl::Step(const Batch& cpu_batch, double lr, double* loss_sum, double* nll_sum,
                         double* grad_norm) {
  const Batch batch = cpu_batch.To(device);
  optimizer->zero_grad();
  LossSums sums;
  {
    AutocastScope autocast(options.amp != AmpMode::kNone,
                           options.amp == AmpMode::kFloat16 ? torch::kFloat16 : torch::kBFloat16);
    const auto logits = model->Forward(batch.source, batch.target_in);
    sums = LabelSmoothedCrossEntropy(logits, batch.target_out, ids.pad, options.label_smoothing);
  }
  // Mean over target tokens: the gradient scale does not depend on the batch.
  const auto loss = sums.loss / static_cast<double>(std::max<int64_t>(1, sums.tokens));
  (loss * state.loss_scale).backward();
  if (state.loss_scale != 1.0) {
    torch::NoGradGuard no_grad;
    for (auto& p : parameters) {
      if (p.grad().defined()) p.grad().mul_(1.0 / state.loss_scale);
    }
  }
  const double max_norm =
      options.clip_norm > 0 ? options.clip_norm : std::numeric_limits<double>::infinity();
  *grad_norm = torch::nn::utils::clip_grad_norm_(parameters, max_norm);
  if (!std::isfinite(*grad_norm)) {
    optimizer->zero_grad();
    if (options.amp == AmpMode::kFloat16) {
      state.loss_scale = std::max(1.0, state.loss_scale / 2);
      state.good_steps = 0;
    }
    return false;
  }
  for (auto& group : optimizer->param_groups()) {
    static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
  }
  optimizer->step();
  if (options.amp == AmpMode::kFloat16 && ++state.good_steps % kLossScaleGrowthInterval == 0) {
    state.loss_scale *= 2;
  }
  *loss_sum = sums.loss.item<double>();
  *nll_sum = sums.nll.item<double>();
  return true;
}

absl::StatusOr<Validation> Trainer::Impl::Validate(Transformer& net, int beam) {
  const auto start = Clock::now();
  const bool was_training = net.is_training();
  net.eval();
  torch::NoGradGuard no_grad;
  Validation result;

  BatchingOptions batching;
  batching.max_tokens = options.max_tokens;
  batching.shuffle = false;
  int64_t tokens = 0;
  for (const auto& indices : MakeBatches(dev.examples, batching, 0, 0)) {
    const Batch batch = Collate(dev.examples, indices, ids).To(device);
    const auto logits = net.Forward(batch.source, batch.target_in);
    const LossSums sums =
        LabelSmoothedCrossEntropy(logits, batch.target_out, ids.pad, options.label_smoothing);
    result.loss += sums.loss.item<double>();
    result.nll += sums.nll.item<double>();
    tokens += sums.tokens;
  }
  result.loss /= std::max<int64_t>(1, tokens);
  result.nll /= std::max<int64_t>(1, tokens);

  // Decode in order of length so that a batch wastes little on padding.
  std::vector<int64_t> order(dev.sources.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return dev.sources[a].size() < dev.sources[b].size();
  });
  std::vector<std::string> hypotheses(dev.sources.size());
  for (size_t begin = 0; begin < order.size();) {
    std::vector<std::vector<int64_t>> sources;
    std::vector<int64_t> rows;
    for (size_t k = begin; k < order.size(); ++k) {
      const int64_t length = static_cast<int64_t>(dev.sources[order[k]].size());
      if (!rows.empty() && (static_cast<int64_t>(rows.size()) + 1) * length * beam * 2 >
                               std::max<int64_t>(options.max_tokens, 1024)) {
        break;
      }
      sources.push_back(dev.sources[order[k]]);
      rows.push_back(order[k]);
    }
    SearchOptions search;
    search.beam_size = beam;
    // Sorted: the last source is the longest. A young model may never emit
    // eos; this bound keeps its validation short.
    const int64_t longest = static_cast<int64_t>(sources.back().size());
    search.max_length =
        static_cast<int>(std::min<int64_t>(config.max_target_positions, 2 * longest + 10));
    const SearchResults results = Search(net, sources, search, device);
    for (size_t r = 0; r < rows.size(); ++r) {
      const auto& tokens_out = results[r].front().tokens;
      hypotheses[rows[r]] =
          tokenizer->Decode(std::vector<int>(tokens_out.begin(), tokens_out.end()));
    }
    begin += rows.size();
  }
  ASSIGN_OR_RETURN(result.bleu, eval::CorpusBleu(hypotheses, {dev.references}));
  if (was_training) net.train();
  result.seconds = Seconds(start);
  return result;
}

absl::StatusOr<bool> Trainer::Impl::ValidateAndTrack(double train_loss, double lr) {
  ASSIGN_OR_RETURN(Validation v, Validate(*model, /*beam=*/1));
  last_validated_step = state.step;
  const bool improved = v.bleu.score > state.best_bleu;
  if (improved) {
    state.best_bleu = v.bleu.score;
    state.best_step = state.step;
    state.bad_validations = 0;
  } else {
    ++state.bad_validations;
  }
  state.history.push_back({state.step, EpochProgress(), train_loss, v.loss, v.nll, v.bleu.score, lr,
                           state.train_seconds});
  Log(
      Format("valid | step %ld | epoch %.2f | dev loss %.3f | dev nll %.3f | ppl %.1f | BLEU %.2f "
             "(greedy) | best %.2f @ %ld | %.1fs",
             static_cast<long>(state.step), EpochProgress(), v.loss, v.nll, std::exp(v.nll),
             v.bleu.score, state.best_bleu, static_cast<long>(state.best_step), v.seconds));
  Log("valid | " + v.bleu.ToString());
  if (options.patience > 0 && state.bad_validations >= options.patience) {
    Log(absl::StrCat("early stop: no better dev BLEU for ", state.bad_validations,
                     " validations (best ", state.best_bleu, " at step ", state.best_step, ")"));
    state.stopped_early = true;
    return true;
  }
  return false;
}

absl::Status Trainer::Impl::SaveCheckpoint() {
  const fs::path root = fs::path(options.output_dir) / kCheckpointDir;
  const std::string name = absl::StrCat("step_", state.step);
  const fs::path written = root / absl::StrCat(".", name, ".tmp");
  RemoveTree(written);
  ModelConfig saved = config;
  saved.weights_dtype = "float32";
  saved.provenance_json =
      Json{{"producer", "quantmt-train"}, {"checkpoint_step", state.step}}.dump();
  RETURN_IF_ERROR(SaveModelDirectory(written.string(), saved, *model));
  RETURN_IF_ERROR(CopyFile(options.tokenizer_path, written / kTokenizerFile));
  try {
    torch::save(*optimizer, (written / kOptimizerFile).string());
  } catch (const c10::Error& e) {
    return absl::DataLossError(
        absl::StrCat("cannot save optimizer state: ", e.what_without_backtrace()));
  }
  RETURN_IF_ERROR(WriteTextFile(written / kStateFile, StateToJson(state).dump(2) + "\n"));
  RETURN_IF_ERROR(ReplaceDirectory(written, root / name));
  last_saved_step = state.step;

  auto checkpoints = ListCheckpoints(options.output_dir);
  for (size_t i = 0; i + options.keep_checkpoints < checkpoints.size(); ++i) {
    RemoveTree(checkpoints[i].second);
  }
  Log(absl::StrCat("saved ", (root / name).string()));
  return absl::OkStatus();
}

absl::StatusOr<TrainSummary> Trainer::Impl::Train() {
  TrainSummary summary;
  summary.first_step = state.step;
  const auto start = Clock::now();
  const double seconds_before = state.train_seconds;
  model->train();
  model->set_dropout(options.dropout);

  // Averages since the last progress line, and since the last validation.
  double window_loss = 0, window_nll = 0, window_norm = 0;
  int64_t window_tokens = 0, window_all_tokens = 0, window_steps = 0;
  double since_validation_loss = 0;
  int64_t since_validation_tokens = 0;
  auto last_log = Clock::now();
  int skipped_in_row = 0;
  double lr = 0;

  if (state.stopped_early) Log("training stopped early before; nothing to do");
  while (!state.stopped_early) {
    if (options.max_steps > 0 && state.step >= options.max_steps) break;
    const auto& epoch_batches = EpochBatches();
    if (state.batch_in_epoch >= static_cast<int64_t>(epoch_batches.size())) {
      if (options.max_epochs > 0 && state.epoch >= options.max_epochs) break;
      ++state.epoch;
      state.batch_in_epoch = 0;
      continue;
    }
    const Batch batch = Collate(train, epoch_batches[state.batch_in_epoch], ids);
    lr = InverseSqrtLearningRate(options.lr, options.warmup, state.step + 1);
    torch::manual_seed(StepSeed(state.seed, state.step + 1));
    double loss_sum = 0, nll_sum = 0, grad_norm = 0;
    const bool stepped = Step(batch, lr, &loss_sum, &nll_sum, &grad_norm);
    ++state.batch_in_epoch;
    if (!stepped) {
      if (options.amp == AmpMode::kFloat16) {
        Log(Format("step %ld: fp16 overflow, loss scale now %g", static_cast<long>(state.step + 1),
                   state.loss_scale));
      } else if (++skipped_in_row >= kMaxSkippedSteps) {
        return absl::InternalError(absl::StrCat("non-finite gradients in ", skipped_in_row,
                                                " steps in a row at step ", state.step + 1,
                                                "; lower --lr or set --clip_norm"));
      }
      continue;
    }
    skipped_in_row = 0;
    ++state.step;
    state.train_seconds = seconds_before + Seconds(start);
    summary.losses.push_back(loss_sum / std::max<int64_t>(1, batch.target_tokens));
    window_loss += loss_sum;
    window_nll += nll_sum;
    window_norm += grad_norm;
    window_tokens += batch.target_tokens;
    window_all_tokens += batch.source_tokens + batch.target_tokens;
    ++window_steps;
    since_validation_loss += loss_sum;
    since_validation_tokens += batch.target_tokens;

    const double since_log = Seconds(last_log);
    if (since_log >= options.log_every_seconds) {
      const double elapsed = Seconds(start);
      const double steps_per_second = (state.step - summary.first_step) / std::max(elapsed, 1e-9);
      const int64_t remaining = RemainingSteps();
      const double nll = window_nll / std::max<int64_t>(1, window_tokens);
      Log(Format(
          "step %ld | epoch %.2f | loss %.3f | nll %.3f | ppl %.1f | lr %.3g | gnorm %.2f | "
          "%.2f steps/s | %.0f tok/s | elapsed %s | eta %s",
          static_cast<long>(state.step), EpochProgress(),
          window_loss / std::max<int64_t>(1, window_tokens), nll, std::exp(nll), lr,
          window_norm / std::max<int64_t>(1, window_steps), window_steps / since_log,
          window_all_tokens / since_log, FormatDuration(state.train_seconds).c_str(),
          remaining < 0 ? "?"
                        : FormatDuration(remaining / std::max(steps_per_second, 1e-9)).c_str()));
      window_loss = window_nll = window_norm = 0;
      window_tokens = window_all_tokens = window_steps = 0;
      last_log = Clock::now();
    }
    // Validation and saving do not count against the throughput of the next
    // progress line.
    const auto side_tasks = Clock::now();
    bool stop = false;
    if (has_dev && options.validate_every > 0 && state.step % options.validate_every == 0) {
      ASSIGN_OR_RETURN(
          stop, ValidateAndTrack(
                    since_validation_loss / std::max<int64_t>(1, since_validation_tokens), lr));
      since_validation_loss = 0;
      since_validation_tokens = 0;
    }
    if (options.save_every > 0 && state.step % options.save_every == 0) {
      RETURN_IF_ERROR(SaveCheckpoint());
    }
    last_log += Clock::now() - side_tasks;
    if (stop) break;
  }
  state.train_seconds = seconds_before + Seconds(start);
  if (has_dev && state.step > summary.first_step && last_validated_step != state.step) {
    ASSIGN_OR_RETURN(
        bool stop, ValidateAndTrack(
                       since_validation_loss / std::max<int64_t>(1, since_validation_tokens), lr));
    (void)stop;  // training ends anyway
  }
  if (state.step > 0 && last_saved_step != state.step) RETURN_IF_ERROR(SaveCheckpoint());
  summary.step = state.step;
  summary.epoch = state.epoch;
  summary.early_stopped = state.stopped_early;
  summary.best_bleu = state.best_bleu;
  Log(absl::StrCat("training done: step ", state.step, ", epoch ", Format("%.2f", EpochProgress()),
                   ", ", FormatDuration(state.train_seconds), " of training"));
  return summary;
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

absl::StatusOr<std::unique_ptr<Trainer>> Trainer::Create(const TrainerOptions& options) {
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  try {
    RETURN_IF_ERROR(impl->Init());
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("torch: ", e.what_without_backtrace()));
  }
  return std::unique_ptr<Trainer>(new Trainer(std::move(impl)));
}

Trainer::Trainer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Trainer::~Trainer() = default;

// Torch reports failures (out of memory, bad shapes) by exception; the
// trainer's callers get a Status instead.
absl::StatusOr<TrainSummary> Trainer::Train() {
  try {
    return impl_->Train();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("torch: ", e.what_without_backtrace()));
  }
}

absl::StatusOr<std::string> Trainer::Export() {
  try {
    return impl_->Export();
  } catch (const c10::Error& e) {
    return absl::InternalError(absl::StrCat("torch: ", e.what_without_backtrace()));
  }
}

Transformer& Trainer::model() { return *impl_->model; }
int64_t Trainer::step() const { return impl_->state.step; }

}  // namespace quantmt::train
