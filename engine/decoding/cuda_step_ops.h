// What a CUDA graph decoder needs around the model (CUDA builds only): static
// buffers, one decoding step over them, the cross-attention projection of
// an encoder pass, and graph capture.
//
// The step is the model's own (Transformer::DecodeStepInPlace: the same
// layers and Linear seam as every other path, so a model option or a
// precision is written once), plus what a decoder does with the logits.
// It reads and writes only the buffers in StepBuffers, so that a CUDA graph
// captured over them can be replayed with new contents.
#pragma once

#include <ATen/cuda/CUDAGraph.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/torch.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "model/transformer.h"
#include "quantmt/engine/status.h"

namespace quantmt {

// The static buffers of a step over R rows, S source positions and T target
// slots. Views of larger buffers are fine: the step reads the shapes here.
struct StepBuffers {
  torch::Tensor tokens;      // int64 [R]: fed at the next step
  torch::Tensor positions;   // int64 [R]: slot each row writes at the next step
  torch::Tensor advance;     // int64 [R]: added to positions after the step (1 or 0)
  torch::Tensor min_length;  // int64 [R]: end-of-sentence forbidden below
  torch::Tensor cross_mask;  // additive [R, 1, 1, S]
  std::vector<torch::Tensor> self_keys, self_values;    // [R, H, T, D] per layer
  std::vector<torch::Tensor> cross_keys, cross_values;  // [R, H, S, D] per layer
  torch::Tensor best_tokens;                            // int64 [R]: the step's choice
  torch::Tensor best_log_probs;                         // float [R]: its log-probability
  // Beam search only (undefined otherwise): each row's K best tokens and
  // their log-probabilities, best first.
  torch::Tensor top_tokens;     // int64 [R, K]
  torch::Tensor top_log_probs;  // float [R, K]
  int64_t max_position = 0;     // positions are clamped here after the step
};

class DecoderStepOps {
 public:
  // For a float model (float32, float16 or bfloat16 layers) in eval mode on
  // a CUDA device; FailedPrecondition saying why not otherwise. Waits for
  // the model's prepared weights to exist, so any stream may read them.
  static absl::StatusOr<DecoderStepOps> Create(Transformer& model);

  const torch::Device& device() const { return device_; }
  // Bytes of self- plus cross-attention cache one row needs per position.
  int64_t cache_bytes_per_position() const;

  // Fresh buffers of `rows` idle rows: BOS at position 0, not advancing, no
  // minimum length, zero caches, cross-attention over all `sources` (zero)
  // positions; max_position is the last of the `slots` slots.
  StepBuffers Allocate(int64_t rows, int64_t sources, int64_t slots) const;

  // One greedy step: the model's step (Transformer::DecodeStepInPlace), then
  // end-of-sentence suppression below min_length, argmax and its
  // log-probability (normalized over the whole vocabulary, as StepDecoder),
  // the K best where top_tokens is defined, then tokens = best and
  // positions += advance.
  void Step(StepBuffers& buffers) const;

  // Projects encoder output memory [B, S, d] for cross-attention and writes
  // layer l's keys and values into keys[l], values[l] ([B, H, S, D] each, or
  // views of that shape).
  void ProjectCross(const torch::Tensor& memory, const std::vector<torch::Tensor>& keys,
                    const std::vector<torch::Tensor>& values) const;

 private:
  DecoderStepOps(Transformer& model, torch::TensorOptions options);

  Transformer* model_;
  torch::TensorOptions options_;  // the model's dtype and device
  torch::Device device_;
};

// A memory pool for graphs' scratch memory (at::cuda::graph_pool_handle()).
using GraphPool = decltype(at::cuda::graph_pool_handle());

// Runs `ops` once on `stream` (cuBLAS workspaces, kernel choices and lazily
// built tables exist before capture), then captures them into a graph whose
// scratch memory comes from `pool` (graphs replayed one after another on
// one stream may share one). Capture is thread-local: other threads may use
// the GPU meanwhile. REQUIRES: `stream` is the current stream.
std::unique_ptr<at::cuda::CUDAGraph> CaptureGraph(at::cuda::CUDAStream stream, GraphPool pool,
                                                  const std::function<void()>& ops);

}  // namespace quantmt
