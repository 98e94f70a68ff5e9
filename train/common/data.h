// Training data: parallel text files -> token ids -> token-budget batches.
//
// Sources are "spm ids + eos"; the decoder reads "bos + target ids" and
// predicts "target ids + eos". Batches hold at most `max_tokens` source plus
// target positions, padding included, so memory per step is bounded whatever
// the sentence lengths. Pairs of similar length share a batch (sorted inside
// shuffled chunks), which keeps padding low without giving up randomness.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "quantmt/engine/status.h"
#include "quantmt/engine/tokenizer.h"

namespace quantmt::train {

struct Example {
  std::vector<int32_t> source;  // spm ids + eos
  std::vector<int32_t> target;  // spm ids only; bos/eos are added in batches

  int64_t source_length() const { return static_cast<int64_t>(source.size()); }
  // Decoder positions: bos + ids (input) or ids + eos (output).
  int64_t target_length() const { return static_cast<int64_t>(target.size()) + 1; }
};

// Counts of one load, for the log: nothing is dropped silently.
struct CorpusStats {
  int64_t lines = 0;          // pairs read
  int64_t invalid = 0;        // skipped: invalid UTF-8 on either side
  int64_t empty = 0;          // skipped: an empty side
  int64_t too_long = 0;       // skipped: longer than max_len (or the batch budget)
  int64_t kept = 0;           // pairs in the corpus
  int64_t source_tokens = 0;  // of the kept pairs, eos included
  int64_t target_tokens = 0;  // of the kept pairs, eos included

  std::string ToString() const;
};

struct CorpusOptions {
  // Pairs with more than this many source or target positions are dropped.
  int64_t max_len = 256;
  // Pairs whose source + target positions exceed this are dropped too, so a
  // batch never exceeds its budget (0: no such limit).
  int64_t max_pair_tokens = 0;
  // Read at most this many pairs in all (0: everything).
  int64_t max_lines = 0;
};

struct SpecialIds {
  int64_t pad = 0;
  int64_t bos = 2;
  int64_t eos = 3;
};

// Reads the aligned files source_files[i] / target_files[i] (same number of
// lines each) and tokenizes them. Errors: missing files, unequal line
// counts, no pair left.
absl::StatusOr<std::vector<Example>> LoadParallelCorpus(
    const std::vector<std::string>& source_files, const std::vector<std::string>& target_files,
    const Tokenizer& tokenizer, const CorpusOptions& options, CorpusStats* stats);

// A dev set: examples for the dev loss, and sources/references for BLEU.
struct DevSet {
  std::vector<Example> examples;              // pairs within max_len, for the loss
  std::vector<std::vector<int64_t>> sources;  // every valid line, ids + eos, cut to max_len
  std::vector<std::string> references;        // raw target lines, aligned with sources
};

// Loads at most `max_lines` (0: all) dev pairs. Invalid UTF-8 lines are
// skipped (and counted); long sources are cut, not dropped, so that BLEU
// covers the whole (capped) dev set.
absl::StatusOr<DevSet> LoadDevSet(const std::string& source_file, const std::string& target_file,
                                  const Tokenizer& tokenizer, int64_t max_len, int64_t max_lines,
                                  CorpusStats* stats);

struct BatchingOptions {
  int64_t max_tokens = 8192;  // source + target positions per batch, padding included
  // Pairs sorted by length together. Larger chunks pad less; smaller ones
  // mix lengths more across batches.
  int64_t chunk_size = 16384;
  bool shuffle = true;  // false: one sorted pass, batches in order (dev)
};

// Padded cost of a batch: rows * (longest source + longest target).
int64_t BatchCost(const std::vector<Example>& examples, const std::vector<int64_t>& indices);

// The batches of one epoch as indices into `examples`. Deterministic in
// (seed, epoch); every example appears exactly once. A single example over
// the budget gets a batch of its own (CorpusOptions::max_pair_tokens avoids
// that).
std::vector<std::vector<int64_t>> MakeBatches(const std::vector<Example>& examples,
                                              const BatchingOptions& options, uint64_t seed,
                                              int64_t epoch);

struct Batch {
  torch::Tensor source;       // int64 [B, S], pad at the end
  torch::Tensor target_in;    // int64 [B, T]: bos + ids
  torch::Tensor target_out;   // int64 [B, T]: ids + eos
  int64_t source_tokens = 0;  // non-pad
  int64_t target_tokens = 0;  // non-pad, eos included

  Batch To(const torch::Device& device) const;
};

// Pads the examples at `indices` into CPU tensors.
Batch Collate(const std::vector<Example>& examples, const std::vector<int64_t>& indices,
              const SpecialIds& ids);

}  // namespace quantmt::train
