// Compiled only when LibTorch has CUDA (QUANTMT_WITH_CUDA); see
// cuda_graph_decoder_unavailable.cc for the other builds.
#include "decoding/cuda_graph_decoder.h"

#include <ATen/cuda/CUDAEvent.h>
#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <list>
#include <numeric>
#include <string>
#include <tuple>
#include <utility>

#include "decoding/cuda_step_ops.h"

namespace quantmt {
namespace {

// Sources and target slots are padded to multiples of this: fewer buckets,
// and attention masks whose rows the fused attention kernels read aligned.
constexpr int64_t kAlign = 16;

int64_t RoundUp(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

int64_t RowBucket(int64_t rows) {
  int64_t bucket = 1;
  while (bucket < rows) bucket *= 2;
  return bucket;
}

// The static device buffers and graphs of one shape: `rows` rows, sources of
// `source_length` positions, `slots` target positions.
struct Bucket {
  int64_t rows = 0, source_length = 0, slots = 0;
  torch::Tensor source_ids;  // int64 [R, S]
  StepBuffers step;          // every row advances; positions stop at the last slot
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
        ops_(model.config(), std::move(weights)),
        options_(options),
        device_(ops_.weights().embedding.device()),
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_.index())) {}

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
  void Launch(Bucket& bucket, int64_t step);
  // Decodes sources[order[i]] for i in [begin, end) as one batch.
  void DecodeSlice(const std::vector<std::vector<int64_t>>& sources,
                   const std::vector<size_t>& order, size_t begin, size_t end,
                   const SearchOptions& options, SearchResults* results);

  Transformer& model_;
  const ModelConfig& config_;
  DecoderStepOps ops_;
  CudaGraphDecoderOptions options_;
  torch::Device device_;
  at::cuda::CUDAStream stream_;
  GraphPool pool_ = at::cuda::graph_pool_handle();  // shared by this decoder's graphs
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
  bucket->source_ids = torch::full({rows, source_length}, config_.pad_id,
                                   ops_.weights().embedding.options().dtype(torch::kLong));
  // Every row advances; finished rows keep stepping until the batch is
  // done, stopping at the last slot.
  bucket->step = ops_.Allocate(rows, source_length, slots);
  bucket->step.advance.fill_(1);
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
    // A pool whose last graph is gone cannot take new ones: start another.
    const bool graphs_left = std::any_of(buckets_.begin(), buckets_.end(), [](const auto& entry) {
      return entry.second->step_graph || entry.second->encode_graph;
    });
    if (!graphs_left) pool_ = at::cuda::graph_pool_handle();
  }
  buckets_.emplace_front(key, MakeBucket(rows, source_length, slots));
  return *buckets_.front().second;
}

std::unique_ptr<at::cuda::CUDAGraph> CudaGraphDecoderImpl::Capture(
    const std::function<void()>& ops) {
  return CaptureGraph(stream_, pool_, ops);
}

void CudaGraphDecoderImpl::EncodeOps(Bucket& bucket) {
  EncoderOutput encoded = model_.Encode(bucket.source_ids);
  bucket.step.cross_mask.copy_(encoded.memory_mask);
  ops_.ProjectCross(encoded.memory, bucket.step.cross_keys, bucket.step.cross_values);
}

void CudaGraphDecoderImpl::Launch(Bucket& bucket, int64_t step) {
  if (bucket.step_graph) {
    bucket.step_graph->replay();
  } else {
    ops_.Step(bucket.step);
  }
  const int64_t slot = step % 2;
  bucket.host_tokens[slot].copy_(bucket.step.best_tokens, /*non_blocking=*/true);
  bucket.host_log_probs[slot].copy_(bucket.step.best_log_probs, /*non_blocking=*/true);
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
  if (graphs && !bucket.step_graph) bucket.step_graph = Capture([&] { ops_.Step(bucket.step); });

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
  for (size_t l = 0; l < bucket.step.self_keys.size(); ++l) {
    // Masked slots get zero weight, but 0 * NaN would not be zero.
    bucket.step.self_keys[l].zero_();
    bucket.step.self_values[l].zero_();
  }
  bucket.step.tokens.fill_(config_.bos_id);
  bucket.step.positions.zero_();
  bucket.step.min_length.fill_(static_cast<int64_t>(options.min_length));
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
  ASSIGN_OR_RETURN(DecoderWeights weights, CollectDecoderWeights(model));
  return std::unique_ptr<CudaGraphDecoder>(
      new CudaGraphDecoderImpl(model, std::move(weights), options));
}

}  // namespace quantmt
