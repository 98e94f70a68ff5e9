// Compiled only when LibTorch has CUDA (QUANTMT_WITH_CUDA); see
// cuda_graph_decoder_unavailable.cc for the other builds.
#include "decoding/cuda_batch_decoder.h"

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>

#include <algorithm>
#include <limits>
#include <map>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>

#include "decoding/cuda_step_ops.h"

namespace quantmt {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Source and target positions come in multiples of this (aligned mask rows
// for the fused attention kernels); rows in multiples of kRowAlign.
constexpr int64_t kAlign = 16;
constexpr int64_t kRowAlign = 8;

int64_t RoundUp(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// The smallest first * 2^k >= n, at most cap.
int64_t Bucket(int64_t n, int64_t first, int64_t cap) {
  int64_t bucket = first;
  while (bucket < n) bucket *= 2;
  return std::min(bucket, cap);
}

// One sentence in the batch; it owns the buffers' row of the same index.
struct Row {
  int64_t id = 0;
  SearchOptions options;
  int64_t source_length = 0;
  std::vector<int64_t> tokens;  // generated so far (also: the tokens fed after BOS)
  float log_prob = 0.0f;
};

class CudaBatchDecoderImpl : public BatchDecoder {
 public:
  CudaBatchDecoderImpl(Transformer& model, DecoderWeights weights,
                       const CudaBatchDecoderOptions& options)
      : model_(model),
        config_(model.config()),
        ops_(model.config(), std::move(weights)),
        options_(options),
        device_(ops_.weights().embedding.device()),
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_.index())),
        pool_(at::cuda::graph_pool_handle()) {
    bytes_per_position_ = 0;
    const int64_t element_size = ops_.weights().embedding.element_size();
    for (const LayerWeights& w : ops_.weights().layers) {
      bytes_per_position_ += 2 * w.heads * w.head_dim * element_size;
    }
  }

  ~CudaBatchDecoderImpl() override { stream_.synchronize(); }

  void Add(const std::vector<DecodeInput>& inputs) override;
  std::vector<DecodeOutput> Step() override;
  std::vector<int64_t> RemoveIf(const std::function<bool(int64_t id)>& drop) override;

  void ForEachBestPrefix(const std::function<void(int64_t id, const std::vector<int64_t>& tokens)>&
                             visit) const override {
    for (const Row& row : rows_) visit(row.id, row.tokens);
  }
  bool empty() const override { return rows_.empty(); }
  int64_t rows() const override { return static_cast<int64_t>(rows_.size()); }
  int64_t padded_source_length() const override {
    int64_t longest = 0;
    for (const Row& row : rows_) longest = std::max(longest, row.source_length);
    return longest;
  }
  int64_t context_tokens() const override {
    int64_t tokens = 0;
    for (const Row& row : rows_) {
      tokens += row.source_length + static_cast<int64_t>(row.tokens.size());
    }
    return tokens;
  }
  int64_t max_target_length() const override {
    int64_t longest = 0;
    for (const Row& row : rows_) longest = std::max<int64_t>(longest, row.options.max_length);
    return longest;
  }
  int64_t cache_bytes() const override {
    return row_capacity_ * (source_capacity_ + slot_capacity_) * bytes_per_position_;
  }

 private:
  // Makes the buffers hold `rows` rows, `sources` source positions and
  // `slots` target slots, keeping the live rows' state.
  void Reserve(int64_t rows, int64_t sources, int64_t slots);
  // Views of the front of the buffers: `rows` rows, `sources` source
  // positions, `slots` target slots.
  StepBuffers Views(int64_t rows, int64_t sources, int64_t slots);
  at::cuda::CUDAGraph* Graph(int64_t rows, int64_t sources, int64_t slots);
  void DropGraphs();
  // Removes the rows whose index `dead` marks; the last live rows fill the
  // holes, so live rows stay packed at the front.
  void Compact(const std::vector<bool>& dead);
  // Rows [begin, end) become idle: position 0, not advancing, attending to
  // their own (finite) data.
  void MakeIdle(int64_t begin, int64_t end);

  Transformer& model_;
  const ModelConfig& config_;
  DecoderStepOps ops_;
  CudaBatchDecoderOptions options_;
  torch::Device device_;
  at::cuda::CUDAStream stream_;
  GraphPool pool_;  // shared by this decoder's graphs
  int64_t bytes_per_position_ = 0;

  std::vector<Row> rows_;  // live rows, in buffer order
  int64_t row_capacity_ = 0, source_capacity_ = 0, slot_capacity_ = 0;
  torch::Tensor tokens_, positions_, advance_, min_length_;  // int64 [rows]
  torch::Tensor slot_index_;                                 // int64 [slots]
  torch::Tensor cross_mask_;                                 // [rows, 1, 1, sources]
  std::vector<torch::Tensor> self_keys_, self_values_;       // [rows, H, slots, D] per layer
  std::vector<torch::Tensor> cross_keys_, cross_values_;     // [rows, H, sources, D] per layer
  torch::Tensor best_tokens_, best_log_probs_;               // [rows]
  torch::Tensor host_tokens_, host_log_probs_;               // pinned [rows]
  std::map<std::tuple<int64_t, int64_t, int64_t>, std::unique_ptr<at::cuda::CUDAGraph>> graphs_;
};

void CudaBatchDecoderImpl::Reserve(int64_t rows, int64_t sources, int64_t slots) {
  if (rows <= row_capacity_ && sources <= source_capacity_ && slots <= slot_capacity_) return;
  // Sized once for the longest sources and targets the model takes and the
  // scheduler's batch, so that shapes (and graphs) stay put; rows double
  // when a batch outgrows them.
  auto bytes = [&](int64_t r, int64_t s, int64_t t) { return r * (s + t) * bytes_per_position_; };
  int64_t new_sources = std::max(
      source_capacity_, RoundUp(std::max<int64_t>(sources, config_.max_source_positions), kAlign));
  int64_t new_slots = std::max(
      slot_capacity_, RoundUp(std::max<int64_t>(slots, config_.max_target_positions), kAlign));
  const int64_t wanted_rows = row_capacity_ == 0 ? options_.max_rows : 2 * row_capacity_;
  int64_t new_rows =
      std::max({RoundUp(rows, kRowAlign), row_capacity_, RoundUp(wanted_rows, kRowAlign)});
  const int64_t budget = options_.max_cache_bytes;
  if (budget > 0 && bytes(new_rows, new_sources, new_slots) > budget) {
    // As many rows as the budget allows at those lengths, at least this batch's.
    const int64_t affordable = budget / ((new_sources + new_slots) * bytes_per_position_);
    new_rows = std::max(RoundUp(rows, kRowAlign), affordable / kRowAlign * kRowAlign);
    if (bytes(new_rows, new_sources, new_slots) > budget) {
      // Not even this batch at full lengths: buffers sized to the batch.
      new_rows = RoundUp(rows, kRowAlign);
      new_sources = RoundUp(sources, kAlign);
      new_slots = RoundUp(slots, kAlign);
    }
  }
  DropGraphs();  // they read the old buffers
  const auto dtype = ops_.weights().embedding.options();
  const auto ids = dtype.dtype(torch::kLong);
  const int64_t live = static_cast<int64_t>(rows_.size());
  // Copies the live rows' state: the first `live` rows, and along `dim`
  // (when given) the old extent.
  auto grow = [&](const torch::Tensor& old, torch::Tensor fresh, int64_t dim) {
    if (old.defined() && live > 0) {
      torch::Tensor from = old.narrow(0, 0, live);
      torch::Tensor to = fresh.narrow(0, 0, live);
      if (dim > 0) {
        const int64_t extent = std::min(old.size(dim), fresh.size(dim));
        from = from.narrow(dim, 0, extent);
        to = to.narrow(dim, 0, extent);
      }
      to.copy_(from);
    }
    return fresh;
  };
  tokens_ = grow(tokens_, torch::full({new_rows}, config_.bos_id, ids), 0);
  positions_ = grow(positions_, torch::zeros({new_rows}, ids), 0);
  advance_ = grow(advance_, torch::zeros({new_rows}, ids), 0);
  min_length_ = grow(min_length_, torch::zeros({new_rows}, ids), 0);
  // Idle rows attend to every (zero) source position: no row is all masked.
  cross_mask_ = grow(cross_mask_, torch::zeros({new_rows, 1, 1, new_sources}, dtype), 3);
  if (live > 0 && new_sources > source_capacity_ && source_capacity_ > 0) {
    cross_mask_.narrow(0, 0, live)
        .narrow(3, source_capacity_, new_sources - source_capacity_)
        .fill_(kNegInf);
  }
  const auto& layers = ops_.weights().layers;
  for (size_t l = 0; l < layers.size(); ++l) {
    const LayerWeights& w = layers[l];
    auto fresh = [&](int64_t length) {
      return torch::zeros({new_rows, w.heads, length, w.head_dim}, dtype);
    };
    auto layer = [l](const std::vector<torch::Tensor>& buffers) {
      return l < buffers.size() ? buffers[l] : torch::Tensor();
    };
    torch::Tensor keys = grow(layer(self_keys_), fresh(new_slots), 2);
    torch::Tensor values = grow(layer(self_values_), fresh(new_slots), 2);
    torch::Tensor cross_keys = grow(layer(cross_keys_), fresh(new_sources), 2);
    torch::Tensor cross_values = grow(layer(cross_values_), fresh(new_sources), 2);
    if (l < self_keys_.size()) {
      self_keys_[l] = keys;
      self_values_[l] = values;
      cross_keys_[l] = cross_keys;
      cross_values_[l] = cross_values;
    } else {
      self_keys_.push_back(keys);
      self_values_.push_back(values);
      cross_keys_.push_back(cross_keys);
      cross_values_.push_back(cross_values);
    }
  }
  slot_index_ = torch::arange(new_slots, ids);
  best_tokens_ = torch::zeros({new_rows}, ids);
  best_log_probs_ = torch::zeros({new_rows}, dtype.dtype(torch::kFloat));
  host_tokens_ = torch::zeros({new_rows}, torch::dtype(torch::kLong).pinned_memory(true));
  host_log_probs_ = torch::zeros({new_rows}, torch::dtype(torch::kFloat).pinned_memory(true));
  row_capacity_ = new_rows;
  source_capacity_ = new_sources;
  slot_capacity_ = new_slots;
}

StepBuffers CudaBatchDecoderImpl::Views(int64_t rows, int64_t sources, int64_t slots) {
  StepBuffers b;
  b.tokens = tokens_.narrow(0, 0, rows);
  b.positions = positions_.narrow(0, 0, rows);
  b.advance = advance_.narrow(0, 0, rows);
  b.min_length = min_length_.narrow(0, 0, rows);
  b.slot_index = slot_index_.narrow(0, 0, slots);
  b.cross_mask = cross_mask_.narrow(0, 0, rows).narrow(3, 0, sources);
  for (size_t l = 0; l < self_keys_.size(); ++l) {
    b.self_keys.push_back(self_keys_[l].narrow(0, 0, rows).narrow(2, 0, slots));
    b.self_values.push_back(self_values_[l].narrow(0, 0, rows).narrow(2, 0, slots));
    b.cross_keys.push_back(cross_keys_[l].narrow(0, 0, rows).narrow(2, 0, sources));
    b.cross_values.push_back(cross_values_[l].narrow(0, 0, rows).narrow(2, 0, sources));
  }
  b.best_tokens = best_tokens_.narrow(0, 0, rows);
  b.best_log_probs = best_log_probs_.narrow(0, 0, rows);
  // Positions only grow for live rows, which leave at their max_length
  // (at most the slot capacity): the clamp only guards the buffers.
  b.max_position = slot_capacity_ - 1;
  return b;
}

at::cuda::CUDAGraph* CudaBatchDecoderImpl::Graph(int64_t rows, int64_t sources, int64_t slots) {
  const auto key = std::make_tuple(rows, sources, slots);
  auto found = graphs_.find(key);
  if (found != graphs_.end()) return found->second.get();
  if (static_cast<int64_t>(graphs_.size()) >= std::max<int64_t>(1, options_.max_graphs)) {
    DropGraphs();
  }
  StepBuffers views = Views(rows, sources, slots);
  // Capturing runs the step once first; it must not move the batch on.
  // (It also writes this step's keys and values, which the real step
  // writes again, the same.)
  const torch::Tensor tokens = tokens_.clone(), positions = positions_.clone();
  auto graph = CaptureGraph(stream_, pool_, [&] { ops_.Step(views); });
  tokens_.copy_(tokens);
  positions_.copy_(positions);
  return graphs_.emplace(key, std::move(graph)).first->second.get();
}

void CudaBatchDecoderImpl::DropGraphs() {
  stream_.synchronize();  // one may still run
  graphs_.clear();
  // A pool whose last graph is gone cannot take new ones: start another.
  pool_ = at::cuda::graph_pool_handle();
}

void CudaBatchDecoderImpl::MakeIdle(int64_t begin, int64_t end) {
  if (end <= begin) return;
  const int64_t count = end - begin;
  tokens_.narrow(0, begin, count).fill_(config_.bos_id);
  positions_.narrow(0, begin, count).zero_();
  advance_.narrow(0, begin, count).zero_();
  min_length_.narrow(0, begin, count).zero_();
  cross_mask_.narrow(0, begin, count).zero_();
}

void CudaBatchDecoderImpl::Add(const std::vector<DecodeInput>& inputs) {
  if (inputs.empty()) return;
  torch::NoGradGuard no_grad;
  c10::cuda::CUDAStreamGuard on_stream(stream_);
  int64_t longest_source = 0, longest_target = 1;
  for (const DecodeInput& input : inputs) {
    if (input.options.beam_size > 1 || input.options.num_hypotheses > 1) {
      throw std::invalid_argument("the CUDA batch decoder runs greedy search only");
    }
    if (input.options.max_length > config_.max_target_positions) {
      throw std::invalid_argument(
          "max_length " + std::to_string(input.options.max_length) + " exceeds the model's " +
          std::to_string(config_.max_target_positions) + " target positions");
    }
    longest_source = std::max<int64_t>(longest_source, static_cast<int64_t>(input.source.size()));
    longest_target = std::max<int64_t>(longest_target, input.options.max_length);
  }
  for (const Row& row : rows_) {
    longest_source = std::max(longest_source, row.source_length);
    longest_target = std::max<int64_t>(longest_target, row.options.max_length);
  }
  const int64_t first = static_cast<int64_t>(rows_.size());
  const int64_t count = static_cast<int64_t>(inputs.size());
  Reserve(first + count, longest_source, longest_target);

  // Rows [first, first + count) are idle until the end: a throw below
  // leaves the batch as it was.
  std::vector<std::vector<int64_t>> sources;
  std::vector<int64_t> min_lengths;
  for (const DecodeInput& input : inputs) {
    sources.push_back(input.source);
    min_lengths.push_back(input.options.min_length);
  }
  EncoderOutput encoded = model_.Encode(PadSources(sources, config_.pad_id, device_));
  const int64_t length = encoded.memory.size(1);
  std::vector<torch::Tensor> keys, values;
  for (size_t l = 0; l < cross_keys_.size(); ++l) {
    keys.push_back(cross_keys_[l].narrow(0, first, count).narrow(2, 0, length));
    values.push_back(cross_values_[l].narrow(0, first, count).narrow(2, 0, length));
    // Stale slots are masked, but 0 x NaN would not be zero.
    self_keys_[l].narrow(0, first, count).zero_();
    self_values_[l].narrow(0, first, count).zero_();
  }
  ops_.ProjectCross(encoded.memory, keys, values);
  torch::Tensor mask = cross_mask_.narrow(0, first, count);
  mask.fill_(kNegInf);
  mask.narrow(3, 0, length).copy_(encoded.memory_mask);
  tokens_.narrow(0, first, count).fill_(config_.bos_id);
  positions_.narrow(0, first, count).zero_();
  min_length_.narrow(0, first, count).copy_(torch::tensor(min_lengths, torch::kLong));
  advance_.narrow(0, first, count).fill_(1);
  for (const DecodeInput& input : inputs) {
    Row row;
    row.id = input.id;
    row.options = input.options;
    row.source_length = static_cast<int64_t>(input.source.size());
    rows_.push_back(std::move(row));
  }
}

std::vector<DecodeOutput> CudaBatchDecoderImpl::Step() {
  std::vector<DecodeOutput> outputs;
  if (rows_.empty()) return outputs;
  torch::NoGradGuard no_grad;
  c10::cuda::CUDAStreamGuard on_stream(stream_);
  const int64_t live = static_cast<int64_t>(rows_.size());
  int64_t longest_source = 1, fed = 0;
  for (const Row& row : rows_) {
    longest_source = std::max(longest_source, row.source_length);
    fed = std::max<int64_t>(fed, static_cast<int64_t>(row.tokens.size()));
  }
  const int64_t rows = Bucket(live, 1, row_capacity_);
  const int64_t sources = Bucket(longest_source, kAlign, source_capacity_);
  const int64_t slots = Bucket(fed + 1, kAlign, slot_capacity_);
  if (options_.capture_graphs) {
    Graph(rows, sources, slots)->replay();
  } else {
    StepBuffers views = Views(rows, sources, slots);
    ops_.Step(views);
  }
  host_tokens_.narrow(0, 0, live).copy_(best_tokens_.narrow(0, 0, live), /*non_blocking=*/true);
  host_log_probs_.narrow(0, 0, live)
      .copy_(best_log_probs_.narrow(0, 0, live), /*non_blocking=*/true);
  stream_.synchronize();
  const int64_t* tokens = host_tokens_.data_ptr<int64_t>();
  const float* log_probs = host_log_probs_.data_ptr<float>();

  // As StepDecoder's greedy choice: end-of-sentence finishes a sentence
  // (not kept in its tokens); reaching max_length cuts it.
  std::vector<bool> done(live, false);
  bool any_done = false;
  for (int64_t r = 0; r < live; ++r) {
    Row& row = rows_[r];
    row.log_prob += log_probs[r];
    const bool finished = tokens[r] == config_.eos_id;
    if (!finished) {
      row.tokens.push_back(tokens[r]);
      if (static_cast<int>(row.tokens.size()) < row.options.max_length) continue;
    }
    SearchHypothesis hypothesis;
    const int64_t length = static_cast<int64_t>(row.tokens.size()) + (finished ? 1 : 0);
    hypothesis.score = LengthNormalizedScore(row.log_prob, length, row.options.length_penalty);
    hypothesis.tokens = std::move(row.tokens);
    hypothesis.log_prob = row.log_prob;
    hypothesis.finished = finished;
    outputs.push_back({row.id, {std::move(hypothesis)}});
    done[r] = true;
    any_done = true;
  }
  if (any_done) Compact(done);
  return outputs;
}

std::vector<int64_t> CudaBatchDecoderImpl::RemoveIf(const std::function<bool(int64_t id)>& drop) {
  std::vector<int64_t> removed;
  std::vector<bool> dead(rows_.size(), false);
  for (size_t r = 0; r < rows_.size(); ++r) {
    if (!drop(rows_[r].id)) continue;
    dead[r] = true;
    removed.push_back(rows_[r].id);
  }
  if (!removed.empty()) {
    torch::NoGradGuard no_grad;
    c10::cuda::CUDAStreamGuard on_stream(stream_);
    Compact(dead);
  }
  return removed;
}

void CudaBatchDecoderImpl::Compact(const std::vector<bool>& dead) {
  const int64_t live = static_cast<int64_t>(rows_.size());
  std::vector<bool> vacant = dead;
  std::vector<int64_t> from, to;
  int64_t last = live - 1;
  for (int64_t hole = 0; hole < live; ++hole) {
    if (!vacant[hole]) continue;
    while (last > hole && vacant[last]) --last;
    if (last <= hole) break;
    from.push_back(last);
    to.push_back(hole);
    rows_[hole] = std::move(rows_[last]);
    vacant[hole] = false;
    vacant[last] = true;
    --last;
  }
  int64_t kept = 0;
  while (kept < live && !vacant[kept]) ++kept;
  if (!from.empty()) {
    const auto ids = torch::TensorOptions().dtype(torch::kLong);
    const torch::Tensor source = torch::tensor(from, ids).to(device_);
    const torch::Tensor target = torch::tensor(to, ids).to(device_);
    auto move = [&](torch::Tensor& buffer) {
      buffer.index_copy_(0, target, buffer.index_select(0, source));
    };
    move(tokens_);
    move(positions_);
    move(min_length_);
    move(cross_mask_);
    for (size_t l = 0; l < self_keys_.size(); ++l) {
      move(self_keys_[l]);
      move(self_values_[l]);
      move(cross_keys_[l]);
      move(cross_values_[l]);
    }
  }
  MakeIdle(kept, live);
  rows_.resize(kept);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchDecoder>> CreateCudaBatchDecoder(
    Transformer& model, const CudaBatchDecoderOptions& options) {
  ASSIGN_OR_RETURN(DecoderWeights weights, CollectDecoderWeights(model));
  return std::unique_ptr<BatchDecoder>(
      new CudaBatchDecoderImpl(model, std::move(weights), options));
}

}  // namespace quantmt
