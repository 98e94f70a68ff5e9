// Drives a BatchDecoder the way a serving replica does: sentences join
// between steps at given points, some are removed midway, and the rest run
// until they finish. For tests that compare a decoder against plain search.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <vector>

#include "decoding/batch_decoder.h"

namespace quantmt::testing {

struct Joining {
  int64_t step = 0;  // joins before this step (0: before the first)
  DecodeInput input;
};

// Runs `joining` through `decoder`; the ids in `removed_at` are removed
// before the given step. Returns each finished sentence's hypotheses by id;
// removed sentences must not finish.
inline std::map<int64_t, std::vector<SearchHypothesis>> RunSchedule(
    BatchDecoder& decoder, const std::vector<Joining>& joining,
    const std::map<int64_t, int64_t>& removed_at) {
  std::map<int64_t, std::vector<SearchHypothesis>> finished;
  size_t next = 0;
  for (int64_t step = 0; next < joining.size() || !decoder.empty(); ++step) {
    std::vector<DecodeInput> inputs;
    while (next < joining.size() && joining[next].step <= step) {
      inputs.push_back(joining[next++].input);
    }
    decoder.Add(inputs);
    const auto removed = decoder.RemoveIf([&](int64_t id) {
      auto found = removed_at.find(id);
      return found != removed_at.end() && found->second <= step;
    });
    for (int64_t id : removed) EXPECT_EQ(finished.count(id), 0u) << "sentence " << id;
    int64_t rows = 0;
    decoder.ForEachBestPrefix([&](int64_t, const std::vector<int64_t>&) { ++rows; });
    EXPECT_LE(rows, decoder.rows());
    for (DecodeOutput& output : decoder.Step()) {
      EXPECT_EQ(removed_at.count(output.id), 0u) << "removed sentence " << output.id << " finished";
      finished[output.id] = std::move(output.hypotheses);
    }
    EXPECT_LT(step, 10000) << "the decoder never empties";
    if (step >= 10000) break;
  }
  return finished;
}

// Sentences of 1..max_length source tokens (ids 4..vocab-1, then EOS 3),
// joining at random steps in 0..last_join, with varied lengths and
// min_length; beam sentences where `beam_every` > 0 (every beam_every-th).
inline std::vector<Joining> RandomJoining(int count, int max_length, int64_t vocab,
                                          int64_t last_join, int beam_every, uint32_t seed) {
  std::mt19937 random(seed);
  std::vector<Joining> joining(count);
  for (int i = 0; i < count; ++i) {
    Joining& j = joining[i];
    j.step = static_cast<int64_t>(random() % (last_join + 1));
    j.input.id = i;
    const int length = 1 + static_cast<int>(random() % max_length);
    for (int k = 0; k < length; ++k) j.input.source.push_back(4 + random() % (vocab - 4));
    j.input.source.push_back(3);
    j.input.options.max_length = 4 + static_cast<int>(random() % 20);
    j.input.options.min_length = static_cast<int>(random() % 3);
    j.input.options.length_penalty = 0.6f;
    if (beam_every > 0 && i % beam_every == 0) {
      j.input.options.beam_size = 3;
      j.input.options.num_hypotheses = 2;
    }
  }
  std::stable_sort(joining.begin(), joining.end(),
                   [](const Joining& a, const Joining& b) { return a.step < b.step; });
  return joining;
}

}  // namespace quantmt::testing
