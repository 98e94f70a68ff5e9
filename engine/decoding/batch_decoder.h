// A running batch of sentences that advances one token per Step(), with
// sentences joining (Add) and leaving (finished, RemoveIf) between steps: what
// a serving replica drives. StepDecoder (step_decoder.h) is the general one
// (greedy and beam search, any device and precision); CUDA float models also
// have one on CUDA graphs (cuda_batch_decoder.h). MakeBatchDecoder
// picks for a model.
//
// Thread-compatible: one thread drives a decoder; several decoders may share
// one Transformer.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "decoding/search.h"
#include "model/transformer.h"

namespace quantmt {

// One sentence to decode.
struct DecodeInput {
  int64_t id = 0;               // the caller's handle, reported back
  std::vector<int64_t> source;  // token ids ending with EOS; REQUIRES: not empty
  SearchOptions options;
};

struct DecodeOutput {
  int64_t id = 0;
  std::vector<SearchHypothesis> hypotheses;  // n-best, best first
};

class BatchDecoder {
 public:
  virtual ~BatchDecoder() = default;

  // Encodes `inputs` and adds them to the running batch; they take their
  // first step at the next Step(). Nothing changes if it throws.
  virtual void Add(const std::vector<DecodeInput>& inputs) = 0;

  // One decoding step for every row. Returns the sentences that finished in
  // it; they have left the batch.
  virtual std::vector<DecodeOutput> Step() = 0;

  // Removes the sentences whose id `drop` selects (e.g. cancelled); returns
  // their ids.
  virtual std::vector<int64_t> RemoveIf(const std::function<bool(int64_t id)>& drop) = 0;

  // The best live prefix of every sentence in the batch (for streaming).
  virtual void ForEachBestPrefix(
      const std::function<void(int64_t id, const std::vector<int64_t>& tokens)>& visit) const = 0;

  virtual bool empty() const = 0;
  // Rows in the batch (a sentence takes beam_size rows).
  virtual int64_t rows() const = 0;
  // Source positions per row in cross-attention, padding included.
  virtual int64_t padded_source_length() const = 0;
  // Source plus generated tokens over all rows, padding excluded.
  virtual int64_t context_tokens() const = 0;
  // Largest number of tokens any sentence in the batch may still be fed.
  virtual int64_t max_target_length() const = 0;
  // Bytes of key/value cache the decoder holds now.
  virtual int64_t cache_bytes() const = 0;
};

// The decoder for a replica of `model` on `device`: with `cuda_graphs`, on a
// CUDA device with a float model, greedy and beam search sentences run on
// CUDA graphs (two CudaBatchDecoders); otherwise StepDecoder. `max_rows` (the
// scheduler's batch) and `max_cache_bytes` (0: no bound) size the graph
// decoder's preallocated cache.
std::unique_ptr<BatchDecoder> MakeBatchDecoder(Transformer& model, const torch::Device& device,
                                               bool cuda_graphs, int64_t max_rows,
                                               int64_t max_cache_bytes);

// Routes greedy single-hypothesis sentences to `greedy` and the others to
// `general`; a step steps both. Exposed for tests.
std::unique_ptr<BatchDecoder> MakeSplitBatchDecoder(std::unique_ptr<BatchDecoder> greedy,
                                                    std::unique_ptr<BatchDecoder> general);

}  // namespace quantmt
