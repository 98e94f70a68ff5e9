// What the CUDA graph decoders share (CUDA builds only): the decoder's weights
// gathered for static-shape steps, the ops of one greedy decoding step over
// static buffers, the cross-attention projection of an encoder pass, and
// graph capture.
//
// A step reads and writes only the buffers in StepBuffers, so that a CUDA
// graph captured over them can be replayed with new contents:
// cuda_graph_decoder.cc (whole batches) and cuda_batch_decoder.cc
// (continuous batching) differ only in how they fill them.
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

struct NormWeights {
  torch::Tensor weight, bias;
};

struct LayerWeights {
  int64_t heads = 0, head_dim = 0;
  torch::Tensor qkv_weight, qkv_bias;  // self-attention q, k, v in one matrix [3A, d]
  torch::Tensor self_out_weight, self_out_bias;
  NormWeights self_norm;
  torch::Tensor cross_q_weight, cross_q_bias, cross_out_weight, cross_out_bias;
  NormWeights cross_norm;
  torch::Tensor fc1_weight, fc1_bias, fc2_weight, fc2_bias;
  NormWeights ffn_norm;
  int64_t cross_kv_offset = 0;  // this layer's keys, then values, in the fused projection
};

// The decoder's weights as the step reads them: views of the model's
// parameters, plus fused copies where one product replaces several.
struct DecoderWeights {
  std::vector<LayerWeights> layers;
  torch::Tensor embedding;  // target token table [V, d]
  torch::Tensor positions;  // learned or sinusoidal [P, d]
  torch::Tensor output;     // output projection [V, d]
  NormWeights final_norm;   // pre-norm stacks only
  // Cross-attention keys and values of every layer in one matrix [sum 2A, d].
  torch::Tensor cross_kv_weight, cross_kv_bias;
};

// The weights of a float model in eval mode on a CUDA device (float32,
// float16 or bfloat16); FailedPrecondition saying why not otherwise. Waits
// for the fused copies to exist, so any stream may read them.
absl::StatusOr<DecoderWeights> CollectDecoderWeights(Transformer& model);

// The static buffers of a step over R rows, S source positions and T target
// slots. Views of larger buffers are fine: the step reads the shapes here.
struct StepBuffers {
  torch::Tensor tokens;      // int64 [R]: fed at the next step
  torch::Tensor positions;   // int64 [R]: slot each row writes at the next step
  torch::Tensor advance;     // int64 [R]: added to positions after the step (1 or 0)
  torch::Tensor min_length;  // int64 [R]: end-of-sentence forbidden below
  torch::Tensor slot_index;  // int64 [T]: 0, 1, ..., T - 1
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
  DecoderStepOps(const ModelConfig& config, DecoderWeights weights);

  const DecoderWeights& weights() const { return weights_; }

  // Fresh buffers of `rows` idle rows: BOS at position 0, not advancing, no
  // minimum length, zero caches, cross-attention over all `sources` (zero)
  // positions; max_position is the last of the `slots` slots.
  StepBuffers Allocate(int64_t rows, int64_t sources, int64_t slots) const;

  // One greedy step: embedding, every decoder layer (self-attention over the
  // slots up to each row's position, cross-attention under the mask), output
  // projection, end-of-sentence suppression below min_length, argmax and its
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
  torch::Tensor LayerNorm(const torch::Tensor& x, const NormWeights& norm) const;
  torch::Tensor FeedForward(const torch::Tensor& x, const LayerWeights& w) const;

  const ModelConfig& config_;
  DecoderWeights weights_;
  double embed_scale_;
  bool pre_norm_;
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
