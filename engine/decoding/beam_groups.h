// The host side of a decoding step for one sentence: its live beams, its
// finished hypotheses, and the choice among the step's candidates. Shared by
// the decoders that differ in how they compute a step (StepDecoder on any
// device, the CUDA batch decoder on graphs), so that both choose alike.
#pragma once

#include <cstdint>
#include <vector>

#include "decoding/search.h"

namespace quantmt {

// The live beams and finished hypotheses of one sentence (greedy: one beam).
struct BeamGroup {
  int64_t id = 0;
  SearchOptions options;
  int64_t beam = 1;
  int64_t step = 0;                         // tokens fed so far
  std::vector<std::vector<int64_t>> beams;  // tokens of each live beam
  std::vector<float> scores;                // cumulative log-prob of each beam
  std::vector<SearchHypothesis> finished;

  // A sentence before its first step: only the first of its beams is live
  // (the others are copies, scored -inf).
  static BeamGroup Start(int64_t id, const SearchOptions& options);
};

// What one step decided for a group: carried-on rows and their tokens.
struct BeamChoice {
  bool done = false;
  std::vector<int64_t> origins;  // row within the group each new beam extends
  std::vector<int64_t> tokens;   // token each new beam was fed
};

// Greedy: the step's best token and its log-probability.
BeamChoice ChooseGreedy(BeamGroup& group, int64_t token, float log_prob, int64_t eos);

// Beam search: `candidates` (beam score + token log-prob) sorted best first,
// each with index origin * vocab + token; at least 2 x beam of them where
// there are (enough to keep `beam` live beams even if `beam` of them end the
// sentence). The caller advances group.step for a group not done.
BeamChoice ChooseBeams(BeamGroup& group, const float* scores, const int64_t* indices,
                       int64_t candidates, int64_t vocab, int64_t eos);

// The n-best list of a finished group, best first.
std::vector<SearchHypothesis> FinalHypotheses(BeamGroup&& group);

}  // namespace quantmt
