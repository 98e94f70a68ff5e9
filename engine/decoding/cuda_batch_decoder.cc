// Compiled only when LibTorch has CUDA (QUANTMT_WITH_CUDA); see
// cuda_batch_decoder_unavailable.cc for the other builds.
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

#include "decoding/beam_groups.h"
#include "decoding/cuda_step_ops.h"

namespace quantmt {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
// Source and target positions come in multiples of this (aligned mask rows
// for the fused attention kernels); rows in multiples of kRowAlign.
constexpr int64_t kAlign = 16;
constexpr int64_t kRowAlign = 8;
// Beam search: the largest beam taken, and so the most candidates a row
// offers a step (2 x beam, as StepDecoder's top-k).
constexpr int64_t kMaxBeam = 64;

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

// One beam-search sentence; it owns group.beam consecutive rows.
struct BeamSentence {
  BeamGroup group;
  int64_t source_length = 0;
};

// The static buffers a step reads and writes (at full capacity: steps run
// on views of their front), and the step's results copied to the host.
struct Buffers {
  int64_t rows = 0, sources = 0, slots = 0;  // capacities
  StepBuffers step;
  torch::Tensor host_tokens, host_log_probs;  // pinned [rows]
  // Beam search: step.top_tokens / top_log_probs [rows, candidates], and
  // pinned copies.
  torch::Tensor host_top_tokens, host_top_log_probs;
};

class CudaBatchDecoderImpl : public BatchDecoder {
 public:
  CudaBatchDecoderImpl(Transformer& model, DecoderStepOps ops,
                       const CudaBatchDecoderOptions& options)
      : model_(model),
        config_(model.config()),
        ops_(std::move(ops)),
        options_(options),
        device_(ops_.device()),
        stream_(c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device_.index())),
        pool_(at::cuda::graph_pool_handle()),
        bytes_per_position_(ops_.cache_bytes_per_position()) {
    if (options_.beam_search) {
      max_candidates_ = std::min<int64_t>(2 * kMaxBeam, config_.target_vocab_size);
    }
  }

  ~CudaBatchDecoderImpl() override { stream_.synchronize(); }

  void Add(const std::vector<DecodeInput>& inputs) override;
  std::vector<DecodeOutput> Step() override;
  std::vector<int64_t> RemoveIf(const std::function<bool(int64_t id)>& drop) override;

  void ForEachBestPrefix(const std::function<void(int64_t id, const std::vector<int64_t>& tokens)>&
                             visit) const override {
    for (const Row& row : rows_) visit(row.id, row.tokens);
    // Beams are kept in score order: the first is the best.
    for (const BeamSentence& s : sentences_) visit(s.group.id, s.group.beams[0]);
  }
  bool empty() const override { return rows_.empty() && sentences_.empty(); }
  int64_t rows() const override { return live_rows(); }
  int64_t padded_source_length() const override {
    int64_t longest = 0;
    for (const Row& row : rows_) longest = std::max(longest, row.source_length);
    for (const BeamSentence& s : sentences_) longest = std::max(longest, s.source_length);
    return longest;
  }
  int64_t context_tokens() const override {
    int64_t tokens = 0;
    for (const Row& row : rows_) {
      tokens += row.source_length + static_cast<int64_t>(row.tokens.size());
    }
    for (const BeamSentence& s : sentences_) {
      tokens += s.group.beam * (s.source_length + s.group.step);
    }
    return tokens;
  }
  int64_t max_target_length() const override {
    int64_t longest = 0;
    for (const Row& row : rows_) longest = std::max<int64_t>(longest, row.options.max_length);
    for (const BeamSentence& s : sentences_) {
      longest = std::max<int64_t>(longest, s.group.options.max_length);
    }
    return longest;
  }
  int64_t cache_bytes() const override {
    return buffers_.rows * (buffers_.sources + buffers_.slots) * bytes_per_position_;
  }

 private:
  // Buffer rows in use: one per greedy sentence, beam per beam sentence.
  int64_t live_rows() const {
    return options_.beam_search ? beam_rows_ : static_cast<int64_t>(rows_.size());
  }
  // Checks `inputs` against this decoder's kind and the model; returns the
  // rows they take.
  int64_t CheckInputs(const std::vector<DecodeInput>& inputs) const;
  // Beam search: the step for every sentence, and the rows' new order.
  std::vector<DecodeOutput> StepBeams();
  // Row i of the buffers takes the state of row from[i] (i < from.size());
  // rows from from.size() to previous_live become idle. Within a sentence only the
  // self-attention caches differ, so `whole_rows` false moves only those.
  void Gather(const std::vector<int64_t>& from, int64_t previous_live, bool whole_rows,
              int64_t slots);
  // Makes the buffers hold `rows` rows, `sources` source positions and
  // `slots` target slots, keeping the live rows' state.
  void Reserve(int64_t rows, int64_t sources, int64_t slots);
  // Fresh buffers: every row idle.
  Buffers Allocate(int64_t rows, int64_t sources, int64_t slots) const;
  // Views of the front of the buffers: `rows` rows, `sources` source
  // positions, `slots` target slots, and (beam search) `candidates` best
  // tokens per row.
  StepBuffers Views(int64_t rows, int64_t sources, int64_t slots, int64_t candidates);
  // Runs one step over those views: replays (or captures) its graph, or
  // launches it op by op.
  void RunStep(int64_t rows, int64_t sources, int64_t slots, int64_t candidates);
  at::cuda::CUDAGraph* Graph(int64_t rows, int64_t sources, int64_t slots, int64_t candidates);
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

  std::vector<Row> rows_;                // greedy: live rows, in buffer order
  std::vector<BeamSentence> sentences_;  // beam search: in buffer order
  int64_t beam_rows_ = 0;                // rows they take
  int64_t max_candidates_ = 0;           // per row in the buffers (beam search)
  Buffers buffers_;
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t>, std::unique_ptr<at::cuda::CUDAGraph>>
      graphs_;
};

void CudaBatchDecoderImpl::Reserve(int64_t rows, int64_t sources, int64_t slots) {
  if (rows <= buffers_.rows && sources <= buffers_.sources && slots <= buffers_.slots) return;
  // Sized once for the longest sources and targets the model takes and the
  // scheduler's batch, so that shapes (and graphs) stay put; rows double
  // when a batch outgrows them.
  auto bytes = [&](int64_t r, int64_t s, int64_t t) { return r * (s + t) * bytes_per_position_; };
  int64_t new_sources = std::max(
      buffers_.sources, RoundUp(std::max<int64_t>(sources, config_.max_source_positions), kAlign));
  int64_t new_slots = std::max(
      buffers_.slots, RoundUp(std::max<int64_t>(slots, config_.max_target_positions), kAlign));
  const int64_t wanted_rows = buffers_.rows == 0 ? options_.max_rows : 2 * buffers_.rows;
  int64_t new_rows =
      std::max({RoundUp(rows, kRowAlign), buffers_.rows, RoundUp(wanted_rows, kRowAlign)});
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
  // All new buffers exist before anything changes: should an allocation
  // fail, the batch and its graphs are as they were.
  Buffers next = Allocate(new_rows, new_sources, new_slots);
  const int64_t live = live_rows();
  if (live > 0) {
    // The live rows' state; along `dim` (when given) the common extent.
    auto copy = [&](const torch::Tensor& from, const torch::Tensor& to, int64_t dim) {
      torch::Tensor source = from.narrow(0, 0, live), target = to.narrow(0, 0, live);
      if (dim > 0) {
        const int64_t extent = std::min(from.size(dim), to.size(dim));
        source = source.narrow(dim, 0, extent);
        target = target.narrow(dim, 0, extent);
      }
      target.copy_(source);
    };
    copy(buffers_.step.tokens, next.step.tokens, 0);
    copy(buffers_.step.positions, next.step.positions, 0);
    copy(buffers_.step.advance, next.step.advance, 0);
    copy(buffers_.step.min_length, next.step.min_length, 0);
    next.step.cross_mask.narrow(0, 0, live).fill_(kNegInf);  // positions past a source: padding
    copy(buffers_.step.cross_mask, next.step.cross_mask, 3);
    for (size_t l = 0; l < next.step.self_keys.size(); ++l) {
      copy(buffers_.step.self_keys[l], next.step.self_keys[l], 2);
      copy(buffers_.step.self_values[l], next.step.self_values[l], 2);
      copy(buffers_.step.cross_keys[l], next.step.cross_keys[l], 2);
      copy(buffers_.step.cross_values[l], next.step.cross_values[l], 2);
    }
  }
  DropGraphs();  // they read the old buffers
  buffers_ = std::move(next);
}

Buffers CudaBatchDecoderImpl::Allocate(int64_t rows, int64_t sources, int64_t slots) const {
  Buffers b;
  b.rows = rows;
  b.sources = sources;
  b.slots = slots;
  // Idle rows attend to every (zero) source position: no row is all masked.
  b.step = ops_.Allocate(rows, sources, slots);
  b.host_tokens = torch::zeros({rows}, torch::dtype(torch::kLong).pinned_memory(true));
  b.host_log_probs = torch::zeros({rows}, torch::dtype(torch::kFloat).pinned_memory(true));
  if (options_.beam_search) {
    const int64_t k = max_candidates_;
    b.step.top_tokens = torch::zeros({rows, k}, b.step.best_tokens.options());
    b.step.top_log_probs = torch::zeros({rows, k}, b.step.best_log_probs.options());
    b.host_top_tokens = torch::zeros({rows, k}, torch::dtype(torch::kLong).pinned_memory(true));
    b.host_top_log_probs = torch::zeros({rows, k}, torch::dtype(torch::kFloat).pinned_memory(true));
  }
  return b;
}

StepBuffers CudaBatchDecoderImpl::Views(int64_t rows, int64_t sources, int64_t slots,
                                        int64_t candidates) {
  StepBuffers b;
  b.tokens = buffers_.step.tokens.narrow(0, 0, rows);
  b.positions = buffers_.step.positions.narrow(0, 0, rows);
  b.advance = buffers_.step.advance.narrow(0, 0, rows);
  b.min_length = buffers_.step.min_length.narrow(0, 0, rows);
  b.cross_mask = buffers_.step.cross_mask.narrow(0, 0, rows).narrow(3, 0, sources);
  for (size_t l = 0; l < buffers_.step.self_keys.size(); ++l) {
    b.self_keys.push_back(buffers_.step.self_keys[l].narrow(0, 0, rows).narrow(2, 0, slots));
    b.self_values.push_back(buffers_.step.self_values[l].narrow(0, 0, rows).narrow(2, 0, slots));
    b.cross_keys.push_back(buffers_.step.cross_keys[l].narrow(0, 0, rows).narrow(2, 0, sources));
    b.cross_values.push_back(
        buffers_.step.cross_values[l].narrow(0, 0, rows).narrow(2, 0, sources));
  }
  b.best_tokens = buffers_.step.best_tokens.narrow(0, 0, rows);
  b.best_log_probs = buffers_.step.best_log_probs.narrow(0, 0, rows);
  if (candidates > 0) {
    b.top_tokens = buffers_.step.top_tokens.narrow(0, 0, rows).narrow(1, 0, candidates);
    b.top_log_probs = buffers_.step.top_log_probs.narrow(0, 0, rows).narrow(1, 0, candidates);
  }
  // Positions only grow for live rows, which leave at their max_length
  // (at most the slot capacity): the clamp only guards the buffers.
  b.max_position = buffers_.slots - 1;
  return b;
}

void CudaBatchDecoderImpl::RunStep(int64_t rows, int64_t sources, int64_t slots,
                                   int64_t candidates) {
  if (options_.capture_graphs) {
    Graph(rows, sources, slots, candidates)->replay();
  } else {
    StepBuffers views = Views(rows, sources, slots, candidates);
    ops_.Step(views);
  }
}

at::cuda::CUDAGraph* CudaBatchDecoderImpl::Graph(int64_t rows, int64_t sources, int64_t slots,
                                                 int64_t candidates) {
  const auto key = std::make_tuple(rows, sources, slots, candidates);
  auto found = graphs_.find(key);
  if (found != graphs_.end()) return found->second.get();
  if (static_cast<int64_t>(graphs_.size()) >= std::max<int64_t>(1, options_.max_graphs)) {
    DropGraphs();
  }
  StepBuffers views = Views(rows, sources, slots, candidates);
  // Capturing runs the step once first; it must not move the batch on.
  // (It also writes this step's keys and values, which the real step
  // writes again, the same.)
  const torch::Tensor tokens = buffers_.step.tokens.clone(),
                      positions = buffers_.step.positions.clone();
  auto graph = CaptureGraph(stream_, pool_, [&] { ops_.Step(views); });
  buffers_.step.tokens.copy_(tokens);
  buffers_.step.positions.copy_(positions);
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
  buffers_.step.tokens.narrow(0, begin, count).fill_(config_.bos_id);
  buffers_.step.positions.narrow(0, begin, count).zero_();
  buffers_.step.advance.narrow(0, begin, count).zero_();
  buffers_.step.min_length.narrow(0, begin, count).zero_();
  buffers_.step.cross_mask.narrow(0, begin, count).zero_();
}

int64_t CudaBatchDecoderImpl::CheckInputs(const std::vector<DecodeInput>& inputs) const {
  int64_t rows = 0;
  for (const DecodeInput& input : inputs) {
    const bool greedy = input.options.beam_size <= 1 && input.options.num_hypotheses <= 1;
    if (!options_.beam_search && !greedy) {
      throw std::invalid_argument("this CUDA batch decoder runs greedy search only");
    }
    if (options_.beam_search &&
        (input.options.beam_size < 2 || input.options.beam_size > kMaxBeam ||
         input.options.num_hypotheses < 1 ||
         input.options.num_hypotheses > input.options.beam_size)) {
      throw std::invalid_argument("this CUDA batch decoder runs beam search with beam_size 2.." +
                                  std::to_string(kMaxBeam) + " and 1..beam_size hypotheses only");
    }
    if (input.options.max_length > config_.max_target_positions) {
      throw std::invalid_argument(
          "max_length " + std::to_string(input.options.max_length) + " exceeds the model's " +
          std::to_string(config_.max_target_positions) + " target positions");
    }
    rows += options_.beam_search ? input.options.beam_size : 1;
  }
  return rows;
}

void CudaBatchDecoderImpl::Add(const std::vector<DecodeInput>& inputs) {
  if (inputs.empty()) return;
  torch::NoGradGuard no_grad;
  c10::cuda::CUDAStreamGuard on_stream(stream_);
  const int64_t count = CheckInputs(inputs);
  int64_t longest_source = 0, longest_target = 1;
  for (const DecodeInput& input : inputs) {
    longest_source = std::max<int64_t>(longest_source, static_cast<int64_t>(input.source.size()));
    longest_target = std::max<int64_t>(longest_target, input.options.max_length);
  }
  longest_source = std::max(longest_source, padded_source_length());
  longest_target = std::max(longest_target, max_target_length());
  const int64_t first = live_rows();
  Reserve(first + count, longest_source, longest_target);

  // Rows [first, first + count) are idle until the end: a throw below
  // leaves the batch as it was.
  std::vector<std::vector<int64_t>> sources;
  std::vector<int64_t> min_lengths, rows_per_input;
  for (const DecodeInput& input : inputs) {
    sources.push_back(input.source);
    const int64_t beams = options_.beam_search ? input.options.beam_size : 1;
    rows_per_input.push_back(beams);
    min_lengths.insert(min_lengths.end(), beams, input.options.min_length);
  }
  EncoderOutput encoded = model_.Encode(PadSources(sources, config_.pad_id, device_));
  torch::Tensor memory = encoded.memory, memory_mask = encoded.memory_mask;
  if (options_.beam_search) {
    // Each beam row attends to its sentence's encoder output.
    const torch::Tensor repeats = torch::tensor(rows_per_input, torch::kLong).to(device_);
    memory = memory.repeat_interleave(repeats, 0);
    memory_mask = memory_mask.repeat_interleave(repeats, 0);
  }
  const int64_t length = memory.size(1);
  std::vector<torch::Tensor> keys, values;
  for (size_t l = 0; l < buffers_.step.cross_keys.size(); ++l) {
    keys.push_back(buffers_.step.cross_keys[l].narrow(0, first, count).narrow(2, 0, length));
    values.push_back(buffers_.step.cross_values[l].narrow(0, first, count).narrow(2, 0, length));
    // Stale slots are masked, but 0 x NaN would not be zero.
    buffers_.step.self_keys[l].narrow(0, first, count).zero_();
    buffers_.step.self_values[l].narrow(0, first, count).zero_();
  }
  ops_.ProjectCross(memory, keys, values);
  torch::Tensor mask = buffers_.step.cross_mask.narrow(0, first, count);
  mask.fill_(kNegInf);
  mask.narrow(3, 0, length).copy_(memory_mask);
  buffers_.step.tokens.narrow(0, first, count).fill_(config_.bos_id);
  buffers_.step.positions.narrow(0, first, count).zero_();
  buffers_.step.min_length.narrow(0, first, count).copy_(torch::tensor(min_lengths, torch::kLong));
  buffers_.step.advance.narrow(0, first, count).fill_(1);
  for (const DecodeInput& input : inputs) {
    const int64_t source_length = static_cast<int64_t>(input.source.size());
    if (options_.beam_search) {
      sentences_.push_back({BeamGroup::Start(input.id, input.options), source_length});
      beam_rows_ += input.options.beam_size;
      continue;
    }
    Row row;
    row.id = input.id;
    row.options = input.options;
    row.source_length = source_length;
    rows_.push_back(std::move(row));
  }
}

std::vector<DecodeOutput> CudaBatchDecoderImpl::Step() {
  if (options_.beam_search) return StepBeams();
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
  const int64_t rows = Bucket(live, 1, buffers_.rows);
  const int64_t sources = Bucket(longest_source, kAlign, buffers_.sources);
  const int64_t slots = Bucket(fed + 1, kAlign, buffers_.slots);
  RunStep(rows, sources, slots, 0);
  buffers_.host_tokens.narrow(0, 0, live)
      .copy_(buffers_.step.best_tokens.narrow(0, 0, live), /*non_blocking=*/true);
  buffers_.host_log_probs.narrow(0, 0, live)
      .copy_(buffers_.step.best_log_probs.narrow(0, 0, live), /*non_blocking=*/true);
  stream_.synchronize();
  const int64_t* tokens = buffers_.host_tokens.data_ptr<int64_t>();
  const float* log_probs = buffers_.host_log_probs.data_ptr<float>();

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

std::vector<DecodeOutput> CudaBatchDecoderImpl::StepBeams() {
  std::vector<DecodeOutput> outputs;
  if (sentences_.empty()) return outputs;
  torch::NoGradGuard no_grad;
  c10::cuda::CUDAStreamGuard on_stream(stream_);
  const int64_t live = beam_rows_;
  int64_t longest_source = 1, fed = 0, widest = 2;
  for (const BeamSentence& s : sentences_) {
    longest_source = std::max(longest_source, s.source_length);
    fed = std::max(fed, s.group.step);
    widest = std::max(widest, s.group.beam);
  }
  const int64_t rows = Bucket(live, 1, buffers_.rows);
  const int64_t sources = Bucket(longest_source, kAlign, buffers_.sources);
  const int64_t slots = Bucket(fed + 1, kAlign, buffers_.slots);
  // At least 2 x beam per row: the sentence's best 2 x beam candidates are
  // then among its rows' (each beam's score is one constant per row).
  const int64_t candidates = Bucket(2 * widest, 4, max_candidates_);
  RunStep(rows, sources, slots, candidates);
  buffers_.host_top_tokens.narrow(0, 0, live)
      .copy_(buffers_.step.top_tokens.narrow(0, 0, live), /*non_blocking=*/true);
  buffers_.host_top_log_probs.narrow(0, 0, live)
      .copy_(buffers_.step.top_log_probs.narrow(0, 0, live), /*non_blocking=*/true);
  stream_.synchronize();
  const int64_t stride = max_candidates_;
  const int64_t* top_tokens = buffers_.host_top_tokens.data_ptr<int64_t>();
  const float* top_log_probs = buffers_.host_top_log_probs.data_ptr<float>();
  const int64_t vocab = config_.target_vocab_size;

  std::vector<int64_t> from, next_tokens;  // the rows' new order, and their tokens
  std::vector<BeamSentence> kept;
  bool any_done = false;
  std::vector<float> scores, best_scores;
  std::vector<int64_t> indices, best_indices, order;
  int64_t first = 0;
  for (BeamSentence& sentence : sentences_) {
    BeamGroup& group = sentence.group;
    const int64_t beam = group.beam;
    scores.clear();
    indices.clear();
    for (int64_t k = 0; k < beam; ++k) {
      const int64_t row = first + k;
      for (int64_t j = 0; j < candidates; ++j) {
        scores.push_back(group.scores[k] + top_log_probs[row * stride + j]);
        indices.push_back(k * vocab + top_tokens[row * stride + j]);
      }
    }
    // The best 2 x beam, best first, as StepDecoder's top-k over beam x vocab.
    const int64_t wanted = std::min<int64_t>(2 * beam, static_cast<int64_t>(scores.size()));
    order.resize(scores.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
    std::partial_sort(order.begin(), order.begin() + wanted, order.end(),
                      [&](int64_t a, int64_t b) { return scores[a] > scores[b]; });
    best_scores.clear();
    best_indices.clear();
    for (int64_t i = 0; i < wanted; ++i) {
      best_scores.push_back(scores[order[i]]);
      best_indices.push_back(indices[order[i]]);
    }
    BeamChoice choice =
        ChooseBeams(group, best_scores.data(), best_indices.data(), wanted, vocab, config_.eos_id);
    if (choice.done) {
      outputs.push_back({group.id, FinalHypotheses(std::move(group))});
      any_done = true;
    } else {
      for (size_t k = 0; k < choice.origins.size(); ++k) {
        from.push_back(first + choice.origins[k]);
        next_tokens.push_back(choice.tokens[k]);
      }
      group.step += 1;
      kept.push_back(std::move(sentence));
    }
    first += beam;
  }
  sentences_.swap(kept);
  beam_rows_ = static_cast<int64_t>(from.size());
  Gather(from, live, /*whole_rows=*/any_done, slots);
  if (!next_tokens.empty()) {
    buffers_.step.tokens.narrow(0, 0, beam_rows_).copy_(torch::tensor(next_tokens, torch::kLong));
  }
  return outputs;
}

void CudaBatchDecoderImpl::Gather(const std::vector<int64_t>& from, int64_t previous_live,
                                  bool whole_rows, int64_t slots) {
  const int64_t count = static_cast<int64_t>(from.size());
  bool identity = true;
  for (int64_t i = 0; i < count && identity; ++i) identity = from[i] == i;
  if (!identity) {
    const torch::Tensor source = torch::tensor(from, torch::kLong).to(device_);
    // index_select copies first: rows may move both ways.
    auto gather = [&](const torch::Tensor& buffer) {
      buffer.narrow(0, 0, count).copy_(buffer.index_select(0, source));
    };
    for (size_t l = 0; l < buffers_.step.self_keys.size(); ++l) {
      gather(buffers_.step.self_keys[l].narrow(2, 0, slots));
      gather(buffers_.step.self_values[l].narrow(2, 0, slots));
      if (!whole_rows) continue;
      gather(buffers_.step.cross_keys[l]);
      gather(buffers_.step.cross_values[l]);
    }
    if (whole_rows) {
      gather(buffers_.step.tokens);
      gather(buffers_.step.positions);
      gather(buffers_.step.advance);
      gather(buffers_.step.min_length);
      gather(buffers_.step.cross_mask);
    }
  }
  MakeIdle(count, previous_live);
}

std::vector<int64_t> CudaBatchDecoderImpl::RemoveIf(const std::function<bool(int64_t id)>& drop) {
  std::vector<int64_t> removed;
  if (options_.beam_search) {
    std::vector<int64_t> from;
    std::vector<BeamSentence> kept;
    int64_t first = 0;
    for (BeamSentence& sentence : sentences_) {
      const int64_t beam = sentence.group.beam;
      if (drop(sentence.group.id)) {
        removed.push_back(sentence.group.id);
      } else {
        for (int64_t k = 0; k < beam; ++k) from.push_back(first + k);
        kept.push_back(std::move(sentence));
      }
      first += beam;
    }
    sentences_.swap(kept);  // kept holds every sentence left, moved
    if (!removed.empty()) {
      torch::NoGradGuard no_grad;
      c10::cuda::CUDAStreamGuard on_stream(stream_);
      const int64_t previous = beam_rows_;
      beam_rows_ = static_cast<int64_t>(from.size());
      Gather(from, previous, /*whole_rows=*/true, buffers_.slots);
    }
    return removed;
  }
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
    move(buffers_.step.tokens);
    move(buffers_.step.positions);
    move(buffers_.step.min_length);
    move(buffers_.step.cross_mask);
    for (size_t l = 0; l < buffers_.step.self_keys.size(); ++l) {
      move(buffers_.step.self_keys[l]);
      move(buffers_.step.self_values[l]);
      move(buffers_.step.cross_keys[l]);
      move(buffers_.step.cross_values[l]);
    }
  }
  MakeIdle(kept, live);
  rows_.resize(kept);
}

}  // namespace

absl::StatusOr<std::unique_ptr<BatchDecoder>> CreateCudaBatchDecoder(
    Transformer& model, const CudaBatchDecoderOptions& options) {
  ASSIGN_OR_RETURN(DecoderStepOps ops, DecoderStepOps::Create(model));
  return std::unique_ptr<BatchDecoder>(new CudaBatchDecoderImpl(model, std::move(ops), options));
}

}  // namespace quantmt
