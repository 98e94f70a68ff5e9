#include "decoding/beam_groups.h"

#include <algorithm>
#include <limits>
#include <utility>

namespace quantmt {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

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

}  // namespace

BeamGroup BeamGroup::Start(int64_t id, const SearchOptions& options) {
  BeamGroup group;
  group.id = id;
  group.options = options;
  group.beam = std::max(1, options.beam_size);
  group.beams.assign(group.beam, {});
  group.scores.assign(group.beam, kNegInf);
  group.scores[0] = 0.0f;
  return group;
}

BeamChoice ChooseGreedy(BeamGroup& group, int64_t token, float log_prob, int64_t eos) {
  BeamChoice choice;
  std::vector<int64_t>& tokens = group.beams[0];
  group.scores[0] += log_prob;
  const bool finished = token == eos;
  if (!finished) {
    tokens.push_back(token);
    if (static_cast<int>(tokens.size()) < group.options.max_length) {
      choice.origins = {0};
      choice.tokens = {token};
      return choice;
    }
  }
  group.finished.push_back(
      MakeHypothesis(std::move(tokens), group.scores[0], finished, group.options.length_penalty));
  choice.done = true;
  return choice;
}

BeamChoice ChooseBeams(BeamGroup& group, const float* scores, const int64_t* indices,
                       int64_t candidates, int64_t vocab, int64_t eos) {
  BeamChoice choice;
  const float penalty = group.options.length_penalty;
  std::vector<std::vector<int64_t>> beams;
  std::vector<float> beam_scores;
  for (int64_t j = 0; j < candidates && static_cast<int64_t>(beams.size()) < group.beam; ++j) {
    const float score = scores[j];
    if (score == kNegInf) break;
    const int64_t origin = indices[j] / vocab;
    const int64_t token = indices[j] % vocab;
    if (token == eos) {
      // Only end-of-sentence candidates ranked among the best `beam` finish
      // a hypothesis; lower ones would never make the n-best.
      if (j < group.beam) {
        group.finished.push_back(MakeHypothesis(group.beams[origin], score, true, penalty));
      }
      continue;
    }
    std::vector<int64_t> extended = group.beams[origin];
    extended.push_back(token);
    beams.push_back(std::move(extended));
    beam_scores.push_back(score);
    choice.origins.push_back(origin);
    choice.tokens.push_back(token);
  }
  const bool at_max_length = group.step + 1 >= group.options.max_length;
  if (at_max_length) {
    for (size_t k = 0; k < beams.size(); ++k) {
      group.finished.push_back(MakeHypothesis(std::move(beams[k]), beam_scores[k], false, penalty));
    }
  }
  if (at_max_length || static_cast<int64_t>(group.finished.size()) >= group.beam || beams.empty()) {
    choice.done = true;
    return choice;
  }
  // Fill missing beams with dead copies so every sentence keeps `beam` rows.
  while (static_cast<int64_t>(beams.size()) < group.beam) {
    beams.push_back(beams[0]);
    beam_scores.push_back(kNegInf);
    choice.origins.push_back(choice.origins[0]);
    choice.tokens.push_back(choice.tokens[0]);
  }
  group.beams = std::move(beams);
  group.scores = std::move(beam_scores);
  return choice;
}

std::vector<SearchHypothesis> FinalHypotheses(BeamGroup&& group) {
  std::vector<SearchHypothesis> finished = std::move(group.finished);
  if (group.beam == 1) return finished;
  std::stable_sort(
      finished.begin(), finished.end(),
      [](const SearchHypothesis& a, const SearchHypothesis& b) { return a.score > b.score; });
  const auto count = static_cast<size_t>(group.options.num_hypotheses);
  if (finished.size() > count) finished.resize(count);
  return finished;
}

}  // namespace quantmt
