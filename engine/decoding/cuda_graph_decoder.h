// Greedy decoding on a CUDA GPU at the GPU's limits rather than the CPU
// path's: static shapes, a preallocated key/value cache, and one CUDA graph
// per shape bucket for the encoder pass and for a decoding step.
//
// A batch is padded to a bucket of rows (1, 2, 4, ..., max_rows), its sources
// to a multiple of 16 positions and its target length to a multiple of 16
// slots. For each bucket the decoder owns static device buffers (token and
// position per row, self-attention keys/values [rows, heads, slots, head_dim]
// per layer, cross-attention keys/values, masks) and captures, on its own
// stream, (1) the encoder pass with the cross-attention projections and (2)
// one decoding step: embedding, every decoder layer (attention over all slots
// with a mask built from the positions on the device), output projection,
// end-of-sentence suppression below min_length, greedy argmax and its
// log-probability, and the update of the token and position buffers. A step
// is then one graph launch plus one small device-to-host copy; the next step
// is launched before the host reads the previous step's tokens, so the GPU
// does not wait for the host. Finished rows keep stepping (their outputs are
// ignored) until the whole batch is done.
//
// Results equal GreedySearch (search.h) on the same model up to floating-point
// rounding: the same scores and end rules, and the same tokens except where
// two candidates are within rounding of each other.
//
// Float checkpoints only (FloatLinear layers: float32, float16 or bfloat16 on
// a CUDA device, in eval mode); Create says why otherwise. In a build without
// CUDA, Create returns Unimplemented.
//
// Thread-compatible: one thread drives a decoder. REQUIRES: the model stays
// on its device and dtype, with the same weights, while the decoder lives
// (the graphs read the weights in place).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "decoding/search.h"
#include "model/transformer.h"
#include "quantmt/engine/status.h"

namespace quantmt {

struct CudaGraphDecoderOptions {
  // The largest row bucket; bigger batches are decoded in slices of this many.
  int64_t max_rows = 256;
  // false: the same static-shape step, launched op by op (for comparison).
  bool capture_graphs = true;
  // false: the encoder runs op by op (Transformer::Encode) even with graphs.
  bool capture_encoder = true;
  // Buckets (buffers and graphs) kept at once; the oldest is dropped beyond.
  int64_t max_buckets = 8;
};

class CudaGraphDecoder {
 public:
  static absl::StatusOr<std::unique_ptr<CudaGraphDecoder>> Create(
      Transformer& model, const CudaGraphDecoderOptions& options = {});
  virtual ~CudaGraphDecoder() = default;

  // One hypothesis per source, in input order, as GreedySearch returns them
  // (options.beam_size is ignored). Each source is token ids ending with EOS.
  // InvalidArgument for an empty or too long source, an id outside the
  // vocabulary, or a max_length beyond the model's target positions.
  virtual absl::StatusOr<SearchResults> GreedySearch(
      const std::vector<std::vector<int64_t>>& sources, const SearchOptions& options) = 0;
};

}  // namespace quantmt
