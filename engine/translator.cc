// The Translator: tokenizer + Transformer + search, behind the plain-C++ API.
#include "quantmt/engine/translator.h"

#include <torch/torch.h>

#include <algorithm>
#include <filesystem>
#include <numeric>
#include <thread>

#include "absl/strings/str_cat.h"
#include "decoding/search.h"
#include "model/model_io.h"
#include "quantmt/engine/tokenizer.h"

namespace quantmt {
namespace {

absl::StatusOr<torch::ScalarType> ComputeType(const std::string& name, DeviceKind device) {
  if (name == "auto") return device == DeviceKind::kCuda ? torch::kFloat16 : torch::kFloat32;
  if (name == "float32") return torch::kFloat32;
  if (device == DeviceKind::kCpu) {
    return absl::InvalidArgumentError(
        absl::StrCat("compute_type '", name, "' is not supported on CPU (use float32)"));
  }
  if (name == "float16") return torch::kFloat16;
  if (name == "bfloat16") return torch::kBFloat16;
  return absl::InvalidArgumentError(absl::StrCat(
      "unknown compute_type '", name, "' (expected auto, float32, float16 or bfloat16)"));
}

absl::Status ValidateOptions(const TranslationOptions& options) {
  if (options.beam_size < 1 || options.beam_size > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("beam_size must be in 1..64, got ", options.beam_size));
  }
  if (options.num_hypotheses < 1 || options.num_hypotheses > options.beam_size) {
    return absl::InvalidArgumentError(absl::StrCat("num_hypotheses must be in 1..beam_size (",
                                                   options.beam_size, "), got ",
                                                   options.num_hypotheses));
  }
  if (options.max_decoding_length < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_decoding_length must be at least 1, got ", options.max_decoding_length));
  }
  if (options.min_decoding_length < 0 ||
      options.min_decoding_length > options.max_decoding_length) {
    return absl::InvalidArgumentError(
        absl::StrCat("min_decoding_length must be in 0..max_decoding_length, got ",
                     options.min_decoding_length));
  }
  if (options.max_input_length < 0) {
    return absl::InvalidArgumentError("max_input_length must not be negative");
  }
  if (options.max_batch_size < 1) {
    return absl::InvalidArgumentError("max_batch_size must be at least 1");
  }
  if (!(options.length_penalty >= 0.0f && options.length_penalty <= 10.0f)) {
    return absl::InvalidArgumentError("length_penalty must be in [0, 10]");
  }
  return absl::OkStatus();
}

class TranslatorImpl : public Translator {
 public:
  TranslatorImpl(std::shared_ptr<Transformer> model, std::unique_ptr<Tokenizer> source_tokenizer,
                 std::unique_ptr<Tokenizer> target_tokenizer, torch::Device device, ModelInfo info)
      : model_(std::move(model)),
        source_tokenizer_(std::move(source_tokenizer)),
        target_tokenizer_(std::move(target_tokenizer)),
        device_(device),
        info_(std::move(info)) {}

  absl::StatusOr<std::vector<TranslationResult>> Translate(
      const std::vector<std::string>& sentences, const TranslationOptions& options) override {
    RETURN_IF_ERROR(ValidateOptions(options));
    std::vector<std::vector<int>> sources(sentences.size());
    for (size_t i = 0; i < sentences.size(); ++i) {
      if (sentences[i].empty()) continue;  // translated to "" without the model
      std::string error;
      if (!source_tokenizer_->Encode(sentences[i], &sources[i], &error)) {
        return absl::InvalidArgumentError(absl::StrCat("sentence ", i, ": ", error));
      }
      sources[i].push_back(model_->config().eos_id);
    }
    ASSIGN_OR_RETURN(auto results, TranslateIds(sources, options));
    for (auto& result : results) {
      for (auto& hypothesis : result.hypotheses) {
        hypothesis.text = target_tokenizer_->Decode(hypothesis.token_ids);
      }
    }
    return results;
  }

  absl::StatusOr<std::vector<TranslationResult>> TranslateIds(
      const std::vector<std::vector<int>>& sources, const TranslationOptions& options) override {
    RETURN_IF_ERROR(ValidateOptions(options));
    const ModelConfig& config = model_->config();
    const int max_input = options.max_input_length > 0
                              ? std::min(options.max_input_length, config.max_source_positions)
                              : config.max_source_positions;
    std::vector<TranslationResult> results(sources.size());
    std::vector<size_t> order;  // non-empty sources, sorted by length
    for (size_t i = 0; i < sources.size(); ++i) {
      const auto& source = sources[i];
      results[i].source_tokens = static_cast<int>(source.size());
      if (source.empty()) {
        results[i].hypotheses.resize(1);
        continue;
      }
      if (static_cast<int>(source.size()) > max_input) {
        return absl::InvalidArgumentError(
            absl::StrCat("sentence ", i, " has ", source.size(), " tokens, more than the limit of ",
                         max_input, " (max_input_length); split it into shorter sentences"));
      }
      for (int id : source) {
        if (id < 0 || id >= config.source_vocab_size) {
          return absl::InvalidArgumentError(
              absl::StrCat("sentence ", i, ": token id ", id, " is outside the source vocabulary"));
        }
      }
      order.push_back(i);
    }
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return sources[a].size() < sources[b].size(); });

    SearchOptions search;
    search.beam_size = options.beam_size;
    search.num_hypotheses = options.num_hypotheses;
    search.length_penalty = options.length_penalty;
    // Learned and sinusoidal positions are both defined up to max_target_positions.
    search.max_length = std::min(options.max_decoding_length, config.max_target_positions);
    search.min_length = std::min(options.min_decoding_length, search.max_length);

    try {
      for (size_t begin = 0; begin < order.size(); begin += options.max_batch_size) {
        const size_t end = std::min(order.size(), begin + options.max_batch_size);
        std::vector<std::vector<int64_t>> batch;
        for (size_t k = begin; k < end; ++k) {
          batch.emplace_back(sources[order[k]].begin(), sources[order[k]].end());
        }
        SearchResults found = Search(*model_, batch, search, device_);
        for (size_t k = begin; k < end; ++k) {
          for (auto& hypothesis : found[k - begin]) {
            Hypothesis out;
            out.token_ids.assign(hypothesis.tokens.begin(), hypothesis.tokens.end());
            out.score = hypothesis.score;
            out.log_prob = hypothesis.log_prob;
            results[order[k]].hypotheses.push_back(std::move(out));
          }
        }
      }
    } catch (const std::exception& e) {
      // LibTorch reports failures (out of memory, device errors) as exceptions.
      return absl::InternalError(absl::StrCat("translation failed: ", e.what()));
    }
    return results;
  }

  const ModelInfo& info() const override { return info_; }

 private:
  std::shared_ptr<Transformer> model_;
  std::unique_ptr<Tokenizer> source_tokenizer_;
  std::unique_ptr<Tokenizer> target_tokenizer_;
  torch::Device device_;
  ModelInfo info_;
};

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& model_dir,
                                                         const std::string& file,
                                                         int expected_vocab_size) {
  const std::string path = (std::filesystem::path(model_dir) / file).string();
  std::string error;
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::Load(path, &error);
  if (!tokenizer) return absl::InvalidArgumentError(error);
  if (tokenizer->vocab_size() != expected_vocab_size) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": vocabulary has ", tokenizer->vocab_size(),
                     " pieces but config.json says ", expected_vocab_size));
  }
  return tokenizer;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Translator>> Translator::Create(const std::string& model_dir,
                                                               const TranslatorOptions& options) {
  ASSIGN_OR_RETURN(torch::ScalarType dtype, ComputeType(options.compute_type, options.device));
  torch::Device device(torch::kCPU);
  if (options.device == DeviceKind::kCuda) {
    if (!torch::cuda::is_available() || options.device_index < 0 ||
        options.device_index >= static_cast<int>(torch::cuda::device_count())) {
      return absl::FailedPreconditionError(
          absl::StrCat("CUDA device ", options.device_index, " is not available"));
    }
    device = torch::Device(torch::kCUDA, options.device_index);
  } else {
    const int threads = options.num_threads > 0
                            ? options.num_threads
                            : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    torch::set_num_threads(threads);
  }

  ASSIGN_OR_RETURN(std::shared_ptr<Transformer> model, LoadTransformer(model_dir));
  const ModelConfig& config = model->config();
  ASSIGN_OR_RETURN(auto source_tokenizer,
                   LoadTokenizer(model_dir, config.source_tokenizer, config.source_vocab_size));
  ASSIGN_OR_RETURN(auto target_tokenizer,
                   LoadTokenizer(model_dir, config.target_tokenizer, config.target_vocab_size));
  try {
    model->to(device, dtype);
    PrepareForInference(*model);  // e.g. packs int8 weights for the CPU kernels
  } catch (const std::exception& e) {
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot place the model on ", device.str(), ": ", e.what()));
  }

  ModelInfo info;
  info.model_dir = model_dir;
  info.source_language = config.source_language;
  info.target_language = config.target_language;
  info.quantization = config.quantization.scheme;
  info.compute_type = dtype == torch::kFloat32   ? "float32"
                      : dtype == torch::kFloat16 ? "float16"
                                                 : "bfloat16";
  info.device = device.str();
  for (const auto& parameter : model->parameters()) info.num_parameters += parameter.numel();
  std::error_code error;
  info.weights_file_bytes = static_cast<int64_t>(
      std::filesystem::file_size(std::filesystem::path(model_dir) / config.weights_file, error));
  info.max_source_positions = config.max_source_positions;
  return std::unique_ptr<Translator>(
      new TranslatorImpl(std::move(model), std::move(source_tokenizer), std::move(target_tokenizer),
                         device, std::move(info)));
}

}  // namespace quantmt
