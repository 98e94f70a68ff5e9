// Compiled only when LibTorch has CUDA (QUANTMT_WITH_CUDA); see
// cuda_graph_decoder_unavailable.cc for the other builds.
#include "decoding/cuda_graph_decoder.h"

#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <functional>
#include <limits>
#include <list>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>

#if TORCH_VERSION_MAJOR < 2
#error "the CUDA graph decoder needs LibTorch 2.x (scaled_dot_product_attention)"
#endif

namespace quantmt {
namespace {

// Sources and target slots are padded to multiples of this: fewer buckets,
// and attention masks whose rows the fused attention kernels read aligned.
constexpr int64_t kAlign = 16;
constexpr float kNegInf = -std::numeric_limits<float>::infinity();

int64_t RoundUp(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

int64_t RowBucket(int64_t rows) {
  int64_t bucket = 1;
  while (bucket < rows) bucket *= 2;
  return bucket;
}

struct NormWeights {
  torch::Tensor weight, bias;
};

struct LayerWeights {
  int64_t heads = 0, head_dim = 0;
  torch::Tensor qkv_weight, qkv_bias;  // self-attention q, k, v in one matrix [3A, d]
  torch::Tensor self_out_weight, self_out_bias;
  NormWeights self_norm;
  torch::Tensor cross_q_weight, cross_q_bias, cross_out_weight, cross_out_bias;
  NormWeights cross_norm;
  torch::Tensor fc1_weight, fc1_bias, fc2_weight, fc2_bias;
  NormWeights ffn_norm;
  int64_t cross_kv_offset = 0;  // this layer's keys, then values, in the fused projection
};

// The decoder's weights as the step reads them: views of the model's
// parameters, plus fused copies where one product replaces several.
struct DecoderWeights {
  std::vector<LayerWeights> layers;
  torch::Tensor embedding;  // target token table [V, d]
  torch::Tensor positions;  // learned or sinusoidal [P, d]
  torch::Tensor output;     // output projection [V, d]
  NormWeights final_norm;   // pre-norm stacks only
  // Cross-attention keys and values of every layer in one matrix [sum 2A, d].
  torch::Tensor cross_kv_weight, cross_kv_bias;
};

// Finds parameters by their checkpoint names; remembers the first missing one.
class ParameterTable {
 public:
  explicit ParameterTable(torch::nn::Module& model) : parameters_(model.named_parameters()) {}

  torch::Tensor Get(const std::string& name) {
    const torch::Tensor* found = parameters_.find(name);
    if (found == nullptr) {
      if (missing_.empty()) missing_ = name;
      return {};
    }
    return found->detach();
  }
  const std::string& missing() const { return missing_; }

 private:
  torch::OrderedDict<std::string, torch::Tensor> parameters_;
  std::string missing_;
};

// The table of Transformer::SinusoidTable: PE[p, 2i] = sin(p / 10000^(2i/d)),
// PE[p, 2i+1] = cos(p / 10000^(2i/d)), in float64 (Vaswani et al. 2017).
torch::Tensor SinusoidTable(int64_t rows, int64_t d) {
  auto position = torch::arange(rows, torch::kFloat64).unsqueeze(1);
  auto even = torch::arange(0, d, 2, torch::kFloat64);
  auto angle = position * torch::exp(even * (-std::log(10000.0) / d));
  auto table = torch::zeros({rows, d}, torch::kFloat64);
  table.slice(1, 0, d, 2).copy_(torch::sin(angle));
  table.slice(1, 1, d, 2).copy_(torch::cos(angle).narrow(1, 0, d / 2));
  return table;
}

absl::StatusOr<DecoderWeights> CollectWeights(Transformer& model) {
  const ModelConfig& config = model.config();
  ParameterTable table(model);
  DecoderWeights weights;
  const std::string target_table =
      config.shared_embeddings ? "encoder.embed_tokens.weight" : "decoder.embed_tokens.weight";
  weights.embedding = table.Get(target_table);
  weights.output = config.tie_output_projection ? weights.embedding
                                                : table.Get("decoder.output_projection.weight");
  if (config.norm == NormPosition::kPre) {
    weights.final_norm = {table.Get("decoder.layer_norm.weight"),
                          table.Get("decoder.layer_norm.bias")};
  }
  if (config.positions == PositionEncoding::kLearned) {
    weights.positions = table.Get("decoder.embed_positions.weight");
  }
  std::vector<torch::Tensor> cross_kv_weights, cross_kv_biases;
  int64_t cross_kv_offset = 0;
  for (size_t i = 0; i < config.decoder_layers.size(); ++i) {
    const LayerConfig& layer = config.decoder_layers[i];
    const std::string prefix = "decoder.layers." + std::to_string(i) + ".";
    auto get = [&](const std::string& name) { return table.Get(prefix + name); };
    LayerWeights w;
    const int64_t attention_dim = layer.attention_dim > 0 ? layer.attention_dim : config.d_model;
    w.heads = layer.heads;
    w.head_dim = attention_dim / layer.heads;
    std::vector<torch::Tensor> qkv_weight = {get("self_attn.q_proj.weight"),
                                             get("self_attn.k_proj.weight"),
                                             get("self_attn.v_proj.weight")};
    std::vector<torch::Tensor> qkv_bias = {
        get("self_attn.q_proj.bias"), get("self_attn.k_proj.bias"), get("self_attn.v_proj.bias")};
    w.self_out_weight = get("self_attn.out_proj.weight");
    w.self_out_bias = get("self_attn.out_proj.bias");
    w.self_norm = {get("self_attn_layer_norm.weight"), get("self_attn_layer_norm.bias")};
    w.cross_q_weight = get("encoder_attn.q_proj.weight");
    w.cross_q_bias = get("encoder_attn.q_proj.bias");
    w.cross_out_weight = get("encoder_attn.out_proj.weight");
    w.cross_out_bias = get("encoder_attn.out_proj.bias");
    w.cross_norm = {get("encoder_attn_layer_norm.weight"), get("encoder_attn_layer_norm.bias")};
    w.fc1_weight = get("ffn.fc1.weight");
    w.fc1_bias = get("ffn.fc1.bias");
    w.fc2_weight = get("ffn.fc2.weight");
    w.fc2_bias = get("ffn.fc2.bias");
    w.ffn_norm = {get("final_layer_norm.weight"), get("final_layer_norm.bias")};
    cross_kv_weights.push_back(get("encoder_attn.k_proj.weight"));
    cross_kv_weights.push_back(get("encoder_attn.v_proj.weight"));
    cross_kv_biases.push_back(get("encoder_attn.k_proj.bias"));
    cross_kv_biases.push_back(get("encoder_attn.v_proj.bias"));
    if (!table.missing().empty()) break;
    w.qkv_weight = torch::cat(qkv_weight, 0);
    w.qkv_bias = torch::cat(qkv_bias, 0);
    w.cross_kv_offset = cross_kv_offset;
    cross_kv_offset += 2 * attention_dim;
    weights.layers.push_back(std::move(w));
  }
  if (!table.missing().empty()) {
    return absl::FailedPreconditionError(
        "CUDA graph decoding serves float checkpoints only (quantization scheme \"none\"): the "
        "model has no float parameter \"" +
        table.missing() + "\"");
  }
  weights.cross_kv_weight = torch::cat(cross_kv_weights, 0);
  weights.cross_kv_bias = torch::cat(cross_kv_biases, 0);
  if (config.positions == PositionEncoding::kSinusoidal) {
    const int64_t rows = std::max(config.max_source_positions, config.max_target_positions) + 1;
    weights.positions = SinusoidTable(rows, config.d_model).to(weights.embedding.options());
  }
  return weights;
}

// The static device buffers and graphs of one shape: `rows` rows, sources of
// `source_length` positions, `slots` target positions.
struct Bucket {
  int64_t rows = 0, source_length = 0, slots = 0;
  torch::Tensor source_ids;  // int64 [R, S]
  torch::Tensor tokens;      // int64 [R]: fed at the next step
  torch::Tensor positions;   // int64 [R]: slot each row writes at the next step
  torch::Tensor min_length;  // int64 [R]: end-of-sentence forbidden below
  torch::Tensor slot_index;  // int64 [slots]: 0, 1, ..., slots - 1
  torch::Tensor cross_mask;  // additive [R, 1, 1, S]
  std::vector<torch::Tensor> self_keys, self_values;    // [R, H, slots, D] per layer
  std::vector<torch::Tensor> cross_keys, cross_values;  // [R, H, S, D] per layer
  torch::Tensor best_tokens;                            // int64 [R]: the step's choice
  torch::Tensor best_log_probs;                         // float [R]: its log-probability
  // Two pinned host copies: the host reads one step while the next is copied.
  std::array<torch::Tensor, 2> host_tokens, host_log_probs;
  std::array<at::cuda::CUDAEvent, 2> copied;
  std::unique_ptr<at::cuda::CUDAGraph> encode_graph, step_graph;
};

class CudaGraphDecoderImpl : public CudaGraphDecoder {
 public:
  CudaGraphDecoderImpl(Transformer& model, DecoderWeights weights,
                       const CudaGraphDecoderOptions& options)
      : model_(model),
        config_(model.config()),
        weights_(std::move(weights)),
        options_(options),
        device_(weights_.embedding.device()),
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_.index())),
        embed_scale_(config_.scale_embeddings ? std::sqrt(config_.d_model) : 1.0),
        pre_norm_(config_.norm == NormPosition::kPre) {}

  ~CudaGraphDecoderImpl() override {
    // A speculative step may still run; its buffers and graph go with us.
    stream_.synchronize();
  }

  absl::StatusOr<SearchResults> GreedySearch(const std::vector<std::vector<int64_t>>& sources,
                                             const SearchOptions& options) override;

 private:
  absl::Status Validate(const std::vector<std::vector<int64_t>>& sources,
                        const SearchOptions& options) const;
  Bucket& GetBucket(int64_t rows, int64_t source_length, int64_t slots);
  std::unique_ptr<Bucket> MakeBucket(int64_t rows, int64_t source_length, int64_t slots) const;
  std::unique_ptr<at::cuda::CUDAGraph> Capture(const std::function<void()>& ops);
  void EncodeOps(Bucket& bucket);
  void StepOps(Bucket& bucket);
  torch::Tensor LayerNorm(const torch::Tensor& x, const NormWeights& norm) const;
  torch::Tensor FeedForward(const torch::Tensor& x, const LayerWeights& w) const;
  void Launch(Bucket& bucket, int64_t step);
  // Decodes sources[order[i]] for i in [begin, end) as one batch.
  void DecodeSlice(const std::vector<std::vector<int64_t>>& sources,
                   const std::vector<size_t>& order, size_t begin, size_t end,
                   const SearchOptions& options, SearchResults* results);

  Transformer& model_;
  const ModelConfig& config_;
  DecoderWeights weights_;
  CudaGraphDecoderOptions options_;
  torch::Device device_;
  at::cuda::CUDAStream stream_;
  double embed_scale_;
  bool pre_norm_;
  // Most recently used first.
  std::list<std::pair<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<Bucket>>> buckets_;
};

absl::Status CudaGraphDecoderImpl::Validate(const std::vector<std::vector<int64_t>>& sources,
                                            const SearchOptions& options) const {
  for (size_t i = 0; i < sources.size(); ++i) {
    const auto& source = sources[i];
    if (source.empty()) {
      return absl::InvalidArgumentError("source " + std::to_string(i) + " is empty");
    }
    if (static_cast<int64_t>(source.size()) > config_.max_source_positions) {
      return absl::InvalidArgumentError(
          "source " + std::to_string(i) + " has " + std::to_string(source.size()) +
          " tokens; the model takes at most " + std::to_string(config_.max_source_positions));
    }
    for (int64_t id : source) {
      if (id < 0 || id >= config_.source_vocab_size) {
        return absl::InvalidArgumentError("source " + std::to_string(i) + " has token id " +
                                          std::to_string(id) + " outside the vocabulary [0, " +
                                          std::to_string(config_.source_vocab_size) + ")");
      }
    }
  }
  if (options.max_length > config_.max_target_positions) {
    return absl::InvalidArgumentError(
        "max_length " + std::to_string(options.max_length) + " exceeds the model's " +
        std::to_string(config_.max_target_positions) + " target positions");
  }
  return absl::OkStatus();
}

std::unique_ptr<Bucket> CudaGraphDecoderImpl::MakeBucket(int64_t rows, int64_t source_length,
                                                         int64_t slots) const {
  auto bucket = std::make_unique<Bucket>();
  bucket->rows = rows;
  bucket->source_length = source_length;
  bucket->slots = slots;
  const auto dtype = weights_.embedding.options();
  const auto ids = dtype.dtype(torch::kLong);
  bucket->source_ids = torch::full({rows, source_length}, config_.pad_id, ids);
  bucket->tokens = torch::full({rows}, config_.bos_id, ids);
  bucket->positions = torch::zeros({rows}, ids);
  bucket->min_length = torch::zeros({rows}, ids);
  bucket->slot_index = torch::arange(slots, ids);
  bucket->cross_mask = torch::zeros({rows, 1, 1, source_length}, dtype);
  for (const LayerWeights& w : weights_.layers) {
    bucket->self_keys.push_back(torch::zeros({rows, w.heads, slots, w.head_dim}, dtype));
    bucket->self_values.push_back(torch::zeros_like(bucket->self_keys.back()));
    bucket->cross_keys.push_back(torch::zeros({rows, w.heads, source_length, w.head_dim}, dtype));
    bucket->cross_values.push_back(torch::zeros_like(bucket->cross_keys.back()));
  }
  bucket->best_tokens = torch::zeros({rows}, ids);
  bucket->best_log_probs = torch::zeros({rows}, dtype.dtype(torch::kFloat));
  for (int i = 0; i < 2; ++i) {
    bucket->host_tokens[i] = torch::zeros({rows}, torch::dtype(torch::kLong).pinned_memory(true));
    bucket->host_log_probs[i] =
        torch::zeros({rows}, torch::dtype(torch::kFloat).pinned_memory(true));
  }
  return bucket;
}

Bucket& CudaGraphDecoderImpl::GetBucket(int64_t rows, int64_t source_length, int64_t slots) {
  const auto key = std::make_tuple(rows, source_length, slots);
  for (auto it = buckets_.begin(); it != buckets_.end(); ++it) {
    if (it->first == key) {
      buckets_.splice(buckets_.begin(), buckets_, it);
      return *buckets_.front().second;
    }
  }
  if (static_cast<int64_t>(buckets_.size()) >= std::max<int64_t>(1, options_.max_buckets)) {
    stream_.synchronize();  // the oldest bucket's graph may still run
    buckets_.pop_back();
  }
  buckets_.emplace_front(key, MakeBucket(rows, source_length, slots));
  return *buckets_.front().second;
}

std::unique_ptr<at::cuda::CUDAGraph> CudaGraphDecoderImpl::Capture(
    const std::function<void()>& ops) {
  // One run outside the graph first: cuBLAS workspaces, kernel choices and
  // the model's lazily built tables exist before capture.
  ops();
  stream_.synchronize();
  auto graph = std::make_unique<at::cuda::CUDAGraph>();
  // Thread-local capture: other threads may use the GPU meanwhile.
  graph->capture_begin({0, 0}, cudaStreamCaptureModeThreadLocal);
  try {
    ops();
  } catch (...) {
    try {
      graph->capture_end();
    } catch (...) {
    }
    throw;
  }
  graph->capture_end();
  return graph;
}

torch::Tensor CudaGraphDecoderImpl::LayerNorm(const torch::Tensor& x,
                                              const NormWeights& norm) const {
  return at::layer_norm(x, {static_cast<int64_t>(config_.d_model)}, norm.weight, norm.bias,
                        config_.layer_norm_eps);
}

torch::Tensor CudaGraphDecoderImpl::FeedForward(const torch::Tensor& x,
                                                const LayerWeights& w) const {
  torch::Tensor hidden;
  switch (config_.activation) {
    case Activation::kRelu:
      // Bias and ReLU in the GEMM's epilogue (cuBLASLt): one kernel.
      hidden = at::_addmm_activation(w.fc1_bias, x, w.fc1_weight.t());
      break;
    case Activation::kGelu:
      hidden = torch::gelu(at::linear(x, w.fc1_weight, w.fc1_bias));
      break;
    case Activation::kSilu:
      hidden = torch::silu(at::linear(x, w.fc1_weight, w.fc1_bias));
      break;
  }
  return at::linear(hidden, w.fc2_weight, w.fc2_bias);
}

void CudaGraphDecoderImpl::EncodeOps(Bucket& bucket) {
  const int64_t rows = bucket.rows, length = bucket.source_length;
  EncoderOutput encoded = model_.Encode(bucket.source_ids);
  bucket.cross_mask.copy_(encoded.memory_mask);
  // Every layer's cross-attention keys and values in one product.
  auto projected = at::linear(encoded.memory, weights_.cross_kv_weight, weights_.cross_kv_bias);
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const LayerWeights& w = weights_.layers[l];
    const int64_t attention_dim = w.heads * w.head_dim;
    auto split = [&](int64_t offset) {
      return projected.narrow(2, offset, attention_dim)
          .view({rows, length, w.heads, w.head_dim})
          .transpose(1, 2);
    };
    bucket.cross_keys[l].copy_(split(w.cross_kv_offset));
    bucket.cross_values[l].copy_(split(w.cross_kv_offset + attention_dim));
  }
}

void CudaGraphDecoderImpl::StepOps(Bucket& bucket) {
  const int64_t rows = bucket.rows;
  auto x = torch::embedding(weights_.embedding, bucket.tokens) * embed_scale_ +
           torch::embedding(weights_.positions, bucket.positions);  // [R, d]
  // Slots a row has not written yet are hidden: -inf above its position.
  auto unfilled = bucket.slot_index.unsqueeze(0) > bucket.positions.unsqueeze(1);
  auto self_mask = torch::zeros({rows, bucket.slots}, x.options())
                       .masked_fill(unfilled, kNegInf)
                       .view({rows, 1, 1, bucket.slots});
  auto write_slot = bucket.positions.view({rows, 1, 1, 1});
  auto before = [&](const torch::Tensor& h, const NormWeights& norm) {
    return pre_norm_ ? LayerNorm(h, norm) : h;
  };
  auto after = [&](const torch::Tensor& h, const NormWeights& norm) {
    return pre_norm_ ? h : LayerNorm(h, norm);
  };
  for (size_t l = 0; l < weights_.layers.size(); ++l) {
    const LayerWeights& w = weights_.layers[l];
    const int64_t heads = w.heads, head_dim = w.head_dim, attention_dim = heads * head_dim;
    // Self-attention: write this step's key and value at each row's slot,
    // attend over every slot with the mask.
    auto qkv = at::linear(before(x, w.self_norm), w.qkv_weight, w.qkv_bias);  // [R, 3A]
    auto split = [&](int64_t part) {
      return qkv.narrow(1, part * attention_dim, attention_dim).view({rows, heads, 1, head_dim});
    };
    auto index = write_slot.expand({rows, heads, 1, head_dim});
    bucket.self_keys[l].scatter_(2, index, split(1));
    bucket.self_values[l].scatter_(2, index, split(2));
    auto attended = at::scaled_dot_product_attention(split(0), bucket.self_keys[l],
                                                     bucket.self_values[l], self_mask);
    x = after(
        x + at::linear(attended.reshape({rows, attention_dim}), w.self_out_weight, w.self_out_bias),
        w.self_norm);
    // Cross-attention over the encoder output projected once per batch.
    auto q = at::linear(before(x, w.cross_norm), w.cross_q_weight, w.cross_q_bias)
                 .view({rows, heads, 1, head_dim});
    attended = at::scaled_dot_product_attention(q, bucket.cross_keys[l], bucket.cross_values[l],
                                                bucket.cross_mask);
    x = after(x + at::linear(attended.reshape({rows, attention_dim}), w.cross_out_weight,
                             w.cross_out_bias),
              w.cross_norm);
    x = after(x + FeedForward(before(x, w.ffn_norm), w), w.ffn_norm);
  }
  if (pre_norm_) x = LayerNorm(x, weights_.final_norm);
  auto logits = at::linear(x, weights_.output).to(torch::kFloat);  // [R, V]
  // As StepDecoder: normalize over the whole vocabulary, then forbid
  // end-of-sentence below min_length, then take the best.
  auto normalizer = logits.logsumexp(1);
  logits.select(1, config_.eos_id).masked_fill_(bucket.positions < bucket.min_length, kNegInf);
  auto best = logits.max(1);
  bucket.best_log_probs.copy_(std::get<0>(best) - normalizer);
  bucket.best_tokens.copy_(std::get<1>(best));
  bucket.tokens.copy_(std::get<1>(best));
  // Finished rows keep stepping until the batch is done: stay inside the cache.
  bucket.positions.add_(1).clamp_max_(bucket.slots - 1);
}

void CudaGraphDecoderImpl::Launch(Bucket& bucket, int64_t step) {
  if (bucket.step_graph) {
    bucket.step_graph->replay();
  } else {
    StepOps(bucket);
  }
  const int64_t slot = step % 2;
  bucket.host_tokens[slot].copy_(bucket.best_tokens, /*non_blocking=*/true);
  bucket.host_log_probs[slot].copy_(bucket.best_log_probs, /*non_blocking=*/true);
  bucket.copied[slot].record(stream_);
}

void CudaGraphDecoderImpl::DecodeSlice(const std::vector<std::vector<int64_t>>& sources,
                                       const std::vector<size_t>& order, size_t begin, size_t end,
                                       const SearchOptions& options, SearchResults* results) {
  const int64_t count = static_cast<int64_t>(end - begin);
  int64_t longest = 1;
  for (size_t i = begin; i < end; ++i) {
    longest = std::max<int64_t>(longest, static_cast<int64_t>(sources[order[i]].size()));
  }
  // Every row is done after max_length steps (at least one: see ChooseGreedy).
  const int64_t max_steps = std::max(1, options.max_length);
  Bucket& bucket = GetBucket(
      RowBucket(count), std::min<int64_t>(RoundUp(longest, kAlign), config_.max_source_positions),
      std::min<int64_t>(RoundUp(max_steps, kAlign), config_.max_target_positions));
  const bool graphs = options_.capture_graphs;
  // Capture first: the warm-up run moves the state, which is reset below.
  if (graphs && !bucket.step_graph) bucket.step_graph = Capture([&] { StepOps(bucket); });

  auto host_sources = torch::full({bucket.rows, bucket.source_length}, config_.pad_id,
                                  torch::dtype(torch::kLong).pinned_memory(true));
  auto ids = host_sources.accessor<int64_t, 2>();
  for (int64_t r = 0; r < bucket.rows; ++r) {
    if (r >= count) {
      ids[r][0] = config_.eos_id;  // padding rows: one token, so no row is all masked
      continue;
    }
    const auto& source = sources[order[begin + r]];
    for (size_t j = 0; j < source.size(); ++j) ids[r][j] = source[j];
  }
  bucket.source_ids.copy_(host_sources, /*non_blocking=*/true);
  for (size_t l = 0; l < bucket.self_keys.size(); ++l) {
    // Masked slots get zero weight, but 0 * NaN would not be zero.
    bucket.self_keys[l].zero_();
    bucket.self_values[l].zero_();
  }
  bucket.tokens.fill_(config_.bos_id);
  bucket.positions.zero_();
  bucket.min_length.fill_(static_cast<int64_t>(options.min_length));
  if (graphs && options_.capture_encoder && !bucket.encode_graph) {
    try {
      bucket.encode_graph = Capture([&] { EncodeOps(bucket); });
    } catch (const std::exception&) {
      // Transformer::Encode is the model's code: should it ever do what a
      // graph cannot hold (a host sync, a pageable copy), it runs op by op
      // from now on instead of failing every request.
      options_.capture_encoder = false;
      (void)cudaGetLastError();  // the failed capture's error is handled here
    }
  }
  if (bucket.encode_graph) {
    bucket.encode_graph->replay();
  } else {
    EncodeOps(bucket);
  }

  struct Row {
    std::vector<int64_t> tokens;
    float log_prob = 0.0f;
    bool done = false, finished = false;
  };
  std::vector<Row> rows(count);
  int64_t live = count;
  Launch(bucket, 0);
  for (int64_t step = 0; step < max_steps && live > 0; ++step) {
    // The next step runs on the GPU while the host reads this one.
    if (step + 1 < max_steps) Launch(bucket, step + 1);
    const int64_t slot = step % 2;
    bucket.copied[slot].synchronize();
    const int64_t* tokens = bucket.host_tokens[slot].data_ptr<int64_t>();
    const float* log_probs = bucket.host_log_probs[slot].data_ptr<float>();
    for (int64_t r = 0; r < count; ++r) {
      Row& row = rows[r];
      if (row.done) continue;
      row.log_prob += log_probs[r];
      if (tokens[r] == config_.eos_id) {
        row.done = row.finished = true;
      } else {
        row.tokens.push_back(tokens[r]);
        row.done = static_cast<int>(row.tokens.size()) >= options.max_length;
      }
      if (row.done) --live;
    }
  }
  for (int64_t r = 0; r < count; ++r) {
    Row& row = rows[r];
    SearchHypothesis hypothesis;
    const int64_t length = static_cast<int64_t>(row.tokens.size()) + (row.finished ? 1 : 0);
    hypothesis.tokens = std::move(row.tokens);
    hypothesis.log_prob = row.log_prob;
    hypothesis.finished = row.finished;
    hypothesis.score = LengthNormalizedScore(row.log_prob, length, options.length_penalty);
    (*results)[order[begin + r]] = {std::move(hypothesis)};
  }
}

absl::StatusOr<SearchResults> CudaGraphDecoderImpl::GreedySearch(
    const std::vector<std::vector<int64_t>>& sources, const SearchOptions& options) {
  RETURN_IF_ERROR(Validate(sources, options));
  SearchResults results(sources.size());
  if (sources.empty()) return results;
  torch::NoGradGuard no_grad;
  c10::cuda::CUDAStreamGuard on_stream(stream_);
  // Similar lengths share a slice: less source padding.
  std::vector<size_t> order(sources.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sources[a].size() < sources[b].size(); });
  const size_t slice = static_cast<size_t>(std::max<int64_t>(1, options_.max_rows));
  try {
    for (size_t begin = 0; begin < order.size(); begin += slice) {
      DecodeSlice(sources, order, begin, std::min(order.size(), begin + slice), options, &results);
    }
  } catch (const std::exception& e) {
    return absl::InternalError(std::string("CUDA graph decoding failed: ") + e.what());
  }
  return results;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CudaGraphDecoder>> CudaGraphDecoder::Create(
    Transformer& model, const CudaGraphDecoderOptions& options) {
  if (model.is_training()) {
    return absl::FailedPreconditionError(
        "CUDA graph decoding needs the model in eval mode (call eval() first)");
  }
  for (const auto& module : model.modules()) {
    auto* linear = dynamic_cast<Linear*>(module.get());
    if (linear != nullptr && dynamic_cast<FloatLinear*>(linear) == nullptr) {
      return absl::FailedPreconditionError(
          "CUDA graph decoding serves float checkpoints only; this model's quantization scheme "
          "is \"" +
          model.config().quantization.scheme + "\"");
    }
  }
  torch::NoGradGuard no_grad;
  ASSIGN_OR_RETURN(DecoderWeights weights, CollectWeights(model));
  const torch::Tensor& table = weights.embedding;
  if (!table.is_cuda()) {
    return absl::FailedPreconditionError(
        "CUDA graph decoding needs the model on a CUDA device; it is on " + table.device().str() +
        " (move it with to(torch::kCUDA))");
  }
  const auto dtype = table.scalar_type();
  if (dtype != torch::kFloat32 && dtype != torch::kFloat16 && dtype != torch::kBFloat16) {
    return absl::FailedPreconditionError(
        std::string("CUDA graph decoding runs float32, float16 or bfloat16 weights, not ") +
        c10::toString(dtype));
  }
  // The fused weights were made on the default stream; the decoder's own
  // stream must not read them before they exist.
  torch::cuda::synchronize(table.device().index());
  return std::unique_ptr<CudaGraphDecoder>(
      new CudaGraphDecoderImpl(model, std::move(weights), options));
}

}  // namespace quantmt
