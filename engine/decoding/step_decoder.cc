#include "decoding/step_decoder.h"

#include <algorithm>
#include <limits>
#include <map>

namespace quantmt {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The rows of `log_probs` that start at `first_rows[g]` for g in `groups`,
// `width` rows each; no copy when they are all the rows.
torch::Tensor GatherRows(const torch::Tensor& log_probs, const std::vector<int64_t>& groups,
                         const std::vector<int64_t>& first_rows, int64_t width) {
  if (static_cast<int64_t>(groups.size()) * width == log_probs.size(0)) return log_probs;
  std::vector<int64_t> rows;
  for (int64_t g : groups) {
    for (int64_t k = 0; k < width; ++k) rows.push_back(first_rows[g] + k);
  }
  return log_probs.index_select(0, torch::tensor(rows, torch::kLong).to(log_probs.device()));
}

}  // namespace

StepDecoder::StepDecoder(Transformer& model, const torch::Device& device)
    : model_(model), device_(device) {}

void StepDecoder::Add(const std::vector<DecodeInput>& inputs) {
  if (inputs.empty()) return;
  torch::NoGradGuard no_grad;
  const ModelConfig& config = model_.config();
  std::vector<std::vector<int64_t>> sources;
  std::vector<Group> joining_groups;
  std::vector<int64_t> expand;  // row of the encoder batch each decoder row copies
  bool any_beam = false;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const DecodeInput& input = inputs[i];
    sources.push_back(input.source);
    Group group = BeamGroup::Start(input.id, input.options);
    for (int64_t k = 0; k < group.beam; ++k) expand.push_back(static_cast<int64_t>(i));
    any_beam = any_beam || group.beam > 1;
    joining_groups.push_back(std::move(group));
  }
  // Cross-attention keys/values are projected once per sentence, then copied
  // to its beams. Nothing changes until this succeeds (a kernel may throw).
  DecoderState joining =
      model_.StartDecoding(model_.Encode(PadSources(sources, config.pad_id, device_)));
  if (any_beam) joining.Select(expand);
  state_.Append(std::move(joining));
  for (Group& group : joining_groups) groups_.push_back(std::move(group));
  next_tokens_.insert(next_tokens_.end(), expand.size(), config.bos_id);
  UpdateCapacityLimit();
}

void StepDecoder::SelectGreedy(const torch::Tensor& log_probs,
                               const std::vector<int64_t>& group_indices,
                               const std::vector<int64_t>& first_rows,
                               std::vector<Choice>* choices) {
  auto best = GatherRows(log_probs, group_indices, first_rows, 1).max(1);
  auto best_tokens = std::get<1>(best).to(torch::kCPU).contiguous();
  auto best_scores = std::get<0>(best).to(torch::kCPU).contiguous();
  const int64_t eos = model_.config().eos_id;
  const int64_t* token_data = best_tokens.data_ptr<int64_t>();
  const float* score_data = best_scores.data_ptr<float>();
  for (size_t i = 0; i < group_indices.size(); ++i) {
    const int64_t g = group_indices[i];
    (*choices)[g] = ChooseGreedy(groups_[g], token_data[i], score_data[i], eos);
  }
}

void StepDecoder::SelectBeams(const torch::Tensor& log_probs, int64_t beam,
                              const std::vector<int64_t>& group_indices,
                              const std::vector<int64_t>& first_rows,
                              std::vector<Choice>* choices) {
  const int64_t count = static_cast<int64_t>(group_indices.size());
  const int64_t vocab = log_probs.size(1);
  std::vector<float> beam_scores;
  for (int64_t g : group_indices) {
    beam_scores.insert(beam_scores.end(), groups_[g].scores.begin(), groups_[g].scores.end());
  }
  auto totals = GatherRows(log_probs, group_indices, first_rows, beam).view({count, beam, vocab}) +
                torch::tensor(beam_scores).to(log_probs.device()).view({count, beam, 1});
  // 2 * beam candidates: enough to keep `beam` live ones even if up to
  // `beam` of them end the sentence.
  auto top = totals.view({count, beam * vocab}).topk(std::min(2 * beam, beam * vocab), 1);
  auto top_scores = std::get<0>(top).to(torch::kCPU).contiguous();
  auto top_indices = std::get<1>(top).to(torch::kCPU).contiguous();
  const int64_t candidates = top_scores.size(1);
  const int64_t eos = model_.config().eos_id;
  for (int64_t i = 0; i < count; ++i) {
    const int64_t g = group_indices[i];
    (*choices)[g] =
        ChooseBeams(groups_[g], top_scores.data_ptr<float>() + i * candidates,
                    top_indices.data_ptr<int64_t>() + i * candidates, candidates, vocab, eos);
  }
}

std::vector<DecodeOutput> StepDecoder::Step() {
  std::vector<DecodeOutput> outputs;
  if (groups_.empty()) return outputs;
  torch::NoGradGuard no_grad;
  const int64_t eos = model_.config().eos_id;
  auto tokens = torch::tensor(next_tokens_, torch::kLong).to(device_);
  auto log_probs = torch::log_softmax(model_.DecodeStep(tokens, &state_).to(torch::kFloat), -1);

  std::vector<int64_t> first_rows(groups_.size());
  std::vector<int64_t> no_eos_rows;  // rows still below their min_length
  std::map<int64_t, std::vector<int64_t>> groups_by_beam;
  int64_t row = 0;
  for (size_t g = 0; g < groups_.size(); ++g) {
    const Group& group = groups_[g];
    first_rows[g] = row;
    for (int64_t k = 0; k < group.beam; ++k, ++row) {
      if (group.step < group.options.min_length) no_eos_rows.push_back(row);
    }
    groups_by_beam[group.beam].push_back(static_cast<int64_t>(g));
  }
  if (static_cast<int64_t>(no_eos_rows.size()) == row) {
    log_probs.select(1, eos).fill_(kNegInf);
  } else if (!no_eos_rows.empty()) {
    log_probs.select(1, eos).index_fill_(
        0, torch::tensor(no_eos_rows, torch::kLong).to(log_probs.device()), kNegInf);
  }

  std::vector<Choice> choices(groups_.size());
  for (const auto& [beam, group_indices] : groups_by_beam) {
    if (beam == 1) {
      SelectGreedy(log_probs, group_indices, first_rows, &choices);
    } else {
      SelectBeams(log_probs, beam, group_indices, first_rows, &choices);
    }
  }

  std::vector<Group> kept;
  std::vector<int64_t> reorder;  // rows of the current batch that carry on
  std::vector<int64_t> next_tokens;
  bool identity = true;
  for (size_t g = 0; g < groups_.size(); ++g) {
    Group& group = groups_[g];
    Choice& choice = choices[g];
    if (choice.done) {
      outputs.push_back({group.id, FinalHypotheses(std::move(group))});
      identity = false;
      continue;
    }
    for (size_t k = 0; k < choice.origins.size(); ++k) {
      const int64_t source_row = first_rows[g] + choice.origins[k];
      identity = identity && source_row == static_cast<int64_t>(reorder.size());
      reorder.push_back(source_row);
      next_tokens.push_back(choice.tokens[k]);
    }
    group.step += 1;
    kept.push_back(std::move(group));
  }
  if (reorder.empty()) {
    state_ = DecoderState();
  } else if (!identity) {
    state_.Select(reorder);
  }
  groups_.swap(kept);
  next_tokens_.swap(next_tokens);
  UpdateCapacityLimit();
  return outputs;
}

std::vector<int64_t> StepDecoder::RemoveIf(const std::function<bool(int64_t id)>& drop) {
  std::vector<int64_t> removed;
  std::vector<Group> kept;
  std::vector<int64_t> rows;
  std::vector<int64_t> next_tokens;
  int64_t row = 0;
  for (Group& group : groups_) {
    if (drop(group.id)) {
      removed.push_back(group.id);
      row += group.beam;
      continue;
    }
    for (int64_t k = 0; k < group.beam; ++k, ++row) {
      rows.push_back(row);
      next_tokens.push_back(next_tokens_[row]);
    }
    kept.push_back(std::move(group));
  }
  groups_.swap(kept);  // kept holds every group left, moved
  if (removed.empty()) return removed;
  if (rows.empty()) {
    state_ = DecoderState();
  } else {
    torch::NoGradGuard no_grad;
    state_.Select(rows);
  }
  next_tokens_.swap(next_tokens);
  UpdateCapacityLimit();
  return removed;
}

void StepDecoder::ForEachBestPrefix(
    const std::function<void(int64_t id, const std::vector<int64_t>& tokens)>& visit) const {
  // Beams are kept in score order, so the first live one is the best.
  for (const Group& group : groups_) visit(group.id, group.beams[0]);
}

int64_t StepDecoder::padded_source_length() const {
  return state_.memory_mask.defined() ? state_.memory_mask.size(3) : 0;
}

int64_t StepDecoder::context_tokens() const {
  int64_t tokens = 0;
  for (int64_t r = 0; r < state_.batch_size(); ++r) {
    tokens += state_.source_lengths[r] + state_.positions[r];
  }
  return tokens;
}

void StepDecoder::UpdateCapacityLimit() {
  int64_t limit = 0;
  for (const Group& group : groups_) limit = std::max<int64_t>(limit, group.options.max_length);
  state_.capacity_limit = limit;
}

int64_t StepDecoder::CacheBytesBound(const ModelConfig& config, int64_t element_size, int64_t rows,
                                     int64_t source_length, int64_t target_length) {
  int64_t per_position = 0;  // keys + values of every decoder layer
  for (const LayerConfig& layer : config.decoder_layers) {
    const int64_t attention_dim = layer.attention_dim > 0 ? layer.attention_dim : config.d_model;
    per_position += 2 * attention_dim * element_size;
  }
  return rows * (source_length + target_length) * per_position;
}

}  // namespace quantmt
