#include <algorithm>
#include <cmath>
#include <limits>

#include "decoding/search.h"

namespace quantmt {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// The live beams and finished hypotheses of one sentence.
struct SentenceBeams {
  int64_t sentence = 0;                     // index in the input
  std::vector<std::vector<int64_t>> beams;  // tokens of each live beam
  std::vector<float> scores;                // cumulative log-prob of each beam
  std::vector<SearchHypothesis> finished;
};

SearchHypothesis MakeHypothesis(std::vector<int64_t> tokens, float log_prob, bool finished,
                                float length_penalty) {
  SearchHypothesis hypothesis;
  const int64_t length = static_cast<int64_t>(tokens.size()) + (finished ? 1 : 0);
  hypothesis.tokens = std::move(tokens);
  hypothesis.log_prob = log_prob;
  hypothesis.finished = finished;
  hypothesis.score = LengthNormalizedScore(log_prob, length, length_penalty);
  return hypothesis;
}

std::vector<SearchHypothesis> BestHypotheses(std::vector<SearchHypothesis> finished, int count) {
  std::stable_sort(
      finished.begin(), finished.end(),
      [](const SearchHypothesis& a, const SearchHypothesis& b) { return a.score > b.score; });
  if (static_cast<int>(finished.size()) > count) finished.resize(count);
  return finished;
}

}  // namespace

SearchResults BeamSearch(Transformer& model, const std::vector<std::vector<int64_t>>& sources,
                         const SearchOptions& options, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const ModelConfig& config = model.config();
  const int64_t batch = static_cast<int64_t>(sources.size());
  const int64_t beam = std::max(1, options.beam_size);
  SearchResults results(sources.size());
  if (batch == 0) return results;
  const auto long_options = torch::TensorOptions().dtype(torch::kLong).device(device);

  // Encode once per sentence, then give each of its beams a copy of the
  // encoder output (rows sentence * beam + k).
  EncoderOutput encoded = model.Encode(PadSources(sources, config.pad_id, device));
  auto expand = torch::arange(batch, long_options).repeat_interleave(beam);
  encoded.memory = encoded.memory.index_select(0, expand);
  encoded.memory_mask = encoded.memory_mask.index_select(0, expand);
  DecoderState state = model.StartDecoding(encoded);

  std::vector<SentenceBeams> active(batch);
  for (int64_t i = 0; i < batch; ++i) {
    active[i].sentence = i;
    active[i].beams.assign(beam, {});
    // Only the first beam is live at the start: the others are copies.
    active[i].scores.assign(beam, kNegInf);
    active[i].scores[0] = 0.0f;
  }
  auto tokens = torch::full({batch * beam}, static_cast<int64_t>(config.bos_id), long_options);

  for (int64_t step = 0; !active.empty(); ++step) {
    const int64_t rows = static_cast<int64_t>(active.size());
    auto log_probs = torch::log_softmax(model.DecodeStep(tokens, &state).to(torch::kFloat), -1);
    if (step < options.min_length) log_probs.select(1, config.eos_id).fill_(kNegInf);
    const int64_t vocab = log_probs.size(1);

    std::vector<float> beam_scores;
    beam_scores.reserve(rows * beam);
    for (const auto& sentence : active) {
      beam_scores.insert(beam_scores.end(), sentence.scores.begin(), sentence.scores.end());
    }
    auto totals = log_probs.view({rows, beam, vocab}) +
                  torch::tensor(beam_scores).to(device).view({rows, beam, 1});
    // 2 * beam candidates: enough to keep `beam` live ones even if up to
    // `beam` of them end the sentence.
    auto top = totals.view({rows, beam * vocab}).topk(std::min(2 * beam, beam * vocab), 1);
    auto top_scores = std::get<0>(top).to(torch::kCPU).contiguous();
    auto top_indices = std::get<1>(top).to(torch::kCPU).contiguous();
    const int64_t candidates = top_scores.size(1);
    const float* score_data = top_scores.data_ptr<float>();
    const int64_t* index_data = top_indices.data_ptr<int64_t>();

    std::vector<SentenceBeams> next_active;
    std::vector<int64_t> reorder;  // rows of the current batch that carry on
    std::vector<int64_t> next_tokens;
    for (int64_t a = 0; a < rows; ++a) {
      SentenceBeams& sentence = active[a];
      SentenceBeams next;
      next.sentence = sentence.sentence;
      next.finished = std::move(sentence.finished);
      std::vector<int64_t> origins;
      std::vector<int64_t> chosen;
      for (int64_t j = 0; j < candidates && static_cast<int64_t>(next.beams.size()) < beam; ++j) {
        const float score = score_data[a * candidates + j];
        if (score == kNegInf) break;
        const int64_t origin = index_data[a * candidates + j] / vocab;
        const int64_t token = index_data[a * candidates + j] % vocab;
        if (token == config.eos_id) {
          // Only end-of-sentence candidates ranked among the best `beam`
          // finish a hypothesis; lower ones would never make the n-best.
          if (j < beam) {
            next.finished.push_back(
                MakeHypothesis(sentence.beams[origin], score, true, options.length_penalty));
          }
          continue;
        }
        std::vector<int64_t> extended = sentence.beams[origin];
        extended.push_back(token);
        next.beams.push_back(std::move(extended));
        next.scores.push_back(score);
        origins.push_back(origin);
        chosen.push_back(token);
      }
      const bool at_max_length = step + 1 >= options.max_length;
      if (at_max_length) {
        for (size_t k = 0; k < next.beams.size(); ++k) {
          next.finished.push_back(MakeHypothesis(std::move(next.beams[k]), next.scores[k], false,
                                                 options.length_penalty));
        }
      }
      if (at_max_length || static_cast<int64_t>(next.finished.size()) >= beam ||
          next.beams.empty()) {
        results[next.sentence] = BestHypotheses(std::move(next.finished), options.num_hypotheses);
        continue;  // this sentence leaves the batch
      }
      // Fill missing beams with dead copies so every sentence keeps `beam` rows.
      while (static_cast<int64_t>(next.beams.size()) < beam) {
        next.beams.push_back(next.beams[0]);
        next.scores.push_back(kNegInf);
        origins.push_back(origins[0]);
        chosen.push_back(chosen[0]);
      }
      for (int64_t k = 0; k < beam; ++k) {
        reorder.push_back(a * beam + origins[k]);
        next_tokens.push_back(chosen[k]);
      }
      next_active.push_back(std::move(next));
    }
    active.swap(next_active);
    if (active.empty()) break;
    state.Select(torch::tensor(reorder, torch::kLong).to(device));
    tokens = torch::tensor(next_tokens, torch::kLong).to(device);
  }
  return results;
}

}  // namespace quantmt
