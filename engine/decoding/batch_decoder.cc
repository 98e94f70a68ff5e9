#include "decoding/batch_decoder.h"

#include <algorithm>

#include "decoding/cuda_batch_decoder.h"
#include "decoding/step_decoder.h"

namespace quantmt {
namespace {

// Greedy single-hypothesis sentences on one decoder, the rest on another.
class SplitBatchDecoder : public BatchDecoder {
 public:
  SplitBatchDecoder(std::unique_ptr<BatchDecoder> greedy, std::unique_ptr<BatchDecoder> general)
      : greedy_(std::move(greedy)), general_(std::move(general)) {}

  void Add(const std::vector<DecodeInput>& inputs) override {
    std::vector<DecodeInput> greedy, general;
    for (const DecodeInput& input : inputs) {
      const bool is_greedy = input.options.beam_size <= 1 && input.options.num_hypotheses <= 1;
      (is_greedy ? greedy : general).push_back(input);
    }
    // The general decoder first: should the greedy one then throw, the
    // general one's sentences are already in, so undo them.
    general_->Add(general);
    try {
      greedy_->Add(greedy);
    } catch (...) {
      std::vector<int64_t> ids;
      for (const DecodeInput& input : general) ids.push_back(input.id);
      general_->RemoveIf([&](int64_t id) { return std::count(ids.begin(), ids.end(), id) > 0; });
      throw;
    }
  }

  std::vector<DecodeOutput> Step() override {
    std::vector<DecodeOutput> outputs;
    if (!greedy_->empty()) outputs = greedy_->Step();
    if (!general_->empty()) {
      for (DecodeOutput& output : general_->Step()) outputs.push_back(std::move(output));
    }
    return outputs;
  }

  std::vector<int64_t> RemoveIf(const std::function<bool(int64_t id)>& drop) override {
    std::vector<int64_t> removed = greedy_->RemoveIf(drop);
    for (int64_t id : general_->RemoveIf(drop)) removed.push_back(id);
    return removed;
  }

  void ForEachBestPrefix(const std::function<void(int64_t id, const std::vector<int64_t>& tokens)>&
                             visit) const override {
    greedy_->ForEachBestPrefix(visit);
    general_->ForEachBestPrefix(visit);
  }

  bool empty() const override { return greedy_->empty() && general_->empty(); }
  int64_t rows() const override { return greedy_->rows() + general_->rows(); }
  int64_t padded_source_length() const override {
    return std::max(greedy_->padded_source_length(), general_->padded_source_length());
  }
  int64_t context_tokens() const override {
    return greedy_->context_tokens() + general_->context_tokens();
  }
  int64_t max_target_length() const override {
    return std::max(greedy_->max_target_length(), general_->max_target_length());
  }
  int64_t cache_bytes() const override { return greedy_->cache_bytes() + general_->cache_bytes(); }

 private:
  std::unique_ptr<BatchDecoder> greedy_, general_;
};

}  // namespace

std::unique_ptr<BatchDecoder> MakeSplitBatchDecoder(std::unique_ptr<BatchDecoder> greedy,
                                                    std::unique_ptr<BatchDecoder> general) {
  return std::make_unique<SplitBatchDecoder>(std::move(greedy), std::move(general));
}

std::unique_ptr<BatchDecoder> MakeBatchDecoder(Transformer& model, const torch::Device& device,
                                               bool cuda_graphs, int64_t max_rows,
                                               int64_t max_cache_bytes) {
  auto general = std::make_unique<StepDecoder>(model, device);
  if (!device.is_cuda() || !cuda_graphs) return general;
  CudaBatchDecoderOptions options;
  options.max_rows = max_rows;
  // Greedy and beam search hold buffers of their own: half the bound each.
  options.max_cache_bytes = max_cache_bytes > 0 ? std::max<int64_t>(1, max_cache_bytes / 2) : 0;
  // Models the graphs cannot run (and builds without CUDA) keep the general
  // decoder.
  auto greedy = CreateCudaBatchDecoder(model, options);
  if (!greedy.ok()) return general;
  options.beam_search = true;
  auto beams = CreateCudaBatchDecoder(model, options);
  if (!beams.ok()) return MakeSplitBatchDecoder(std::move(*greedy), std::move(general));
  return MakeSplitBatchDecoder(std::move(*greedy), std::move(*beams));
}

}  // namespace quantmt
