// Trainer setup (device, tokenizer, data, a fresh or resumed model) and the
// public face: torch exceptions become Status here.
#include "train/common/trainer.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "model/model_io.h"
#include "train/common/checkpoints.h"
#include "train/common/model_export.h"
#include "train/common/optimization.h"
#include "train/common/run_info.h"
#include "train/common/trainer_impl.h"

namespace quantmt::train {

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

absl::StatusOr<std::shared_ptr<Transformer>> Trainer::Impl::CreateModel(
    const ModelConfig& model_config) {
  if (options.make_linear) return Transformer::Create(model_config, options.make_linear);
  return Transformer::Create(model_config);
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
