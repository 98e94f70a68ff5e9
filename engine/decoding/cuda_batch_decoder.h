// Greedy decoding (and, in a second instance, beam search: below) with
// continuous batching on a CUDA GPU, at the GPU's limits: static buffers, a
// preallocated key/value cache, and one CUDA graph per shape bucket for a
// decoding step. The GPU path of the serving engine, and so of the
// Translator too. The step is the model's own (cuda_step_ops.h).
//
// Every sentence owns one row of the static buffers (token, position,
// min_length, its self-attention cache [H, slots, D] and cross-attention
// keys/values [H, S, D] per layer). Live rows are kept packed at the front:
// a sentence joining takes the next free row (its encoder pass runs op by
// op, once); one leaving is filled by the last live row. A step runs the
// graph for (rows, sources, slots) rounded up to buckets (rows to powers of
// two, positions to 16 x powers of two), over views of the front of the
// buffers; rows past the live ones are idle (position 0, not advancing).
// The buffers are sized at the first sentence for the model's longest
// sources and targets and the scheduler's batch (within the cache bound);
// should a batch need more, they are reallocated (live state copied) and the
// graphs captured again. A graph is captured the first time its shape is
// needed (a few ms), then replayed.
//
// Results equal GreedySearch (BeamSearch for the beam instance; search.h) on
// the same model up to floating-point rounding, whatever joins or leaves the
// batch meanwhile.
//
// Float layers only (a compressed checkpoint on a GPU is placed as its float
// twin: model/dequantize.h); Create says why otherwise. In a build without
// CUDA, Create returns Unimplemented.
//
// Thread-compatible. REQUIRES: the model stays on its device and dtype, with
// the same weights, while the decoder lives.
#pragma once

#include <cstdint>
#include <memory>

#include "decoding/batch_decoder.h"
#include "model/transformer.h"
#include "quantmt/engine/status.h"

namespace quantmt {

struct CudaBatchDecoderOptions {
  // false: the same static-shape steps, launched op by op (for comparison).
  bool capture_graphs = true;
  // Captured graphs kept at once; beyond, all are dropped and captured anew.
  int64_t max_graphs = 256;
  // Rows the buffers are first sized for (the scheduler's batch); they
  // double when a batch outgrows them.
  int64_t max_rows = 64;
  // Bound on the preallocated cache: the buffers hold the model's longest
  // sources and targets for as many rows as it allows (at least the batch's),
  // or else only the batch's lengths. 0: no bound.
  int64_t max_cache_bytes = 0;
  // false: greedy sentences only (beam_size 1, one hypothesis). true: beam
  // search sentences only (beam_size 2..64), each `beam_size` rows.
  bool beam_search = false;
};

// Beam search on the same buffers and graphs: a sentence's beams take
// consecutive rows; the step's graph also yields each row's 2 x beam best
// tokens, the host chooses the beams (beam_groups.h, as StepDecoder), and
// the rows' self-attention caches are gathered to their new beams' origins
// before the next step (one gather per cache tensor, over the used slots).
//
// Sentences of the other kind are refused by Add (std::invalid_argument):
// route them elsewhere (MakeBatchDecoder does).
absl::StatusOr<std::unique_ptr<BatchDecoder>> CreateCudaBatchDecoder(
    Transformer& model, const CudaBatchDecoderOptions& options = {});

}  // namespace quantmt
