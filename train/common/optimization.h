// Internals of the update step shared with setup and the loop: the fp16 loss
// scale, the per-step seed, and autocast. (The loss and the learning-rate
// schedule are public, in trainer.h.)
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cstdint>

namespace quantmt::train {

// fp16: the loss scale starts here, halves on overflow and doubles after
// kLossScaleGrowthInterval steps without one (as torch.cuda.amp.GradScaler
// does).
constexpr double kInitialLossScale = 65536.0;
constexpr int64_t kLossScaleGrowthInterval = 2000;

// Dropout masks of a step depend on (seed, step) only, so a resumed run draws
// the same masks as an uninterrupted one.
inline uint64_t StepSeed(uint64_t seed, int64_t step) {
  return seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step);
}

// Autocast for the forward pass on CUDA, off again (and its cast cache
// cleared) when the scope ends. LibTorch 2.4 replaced the CUDA-only calls by
// device-typed ones and deprecated the old names.
class AutocastScope {
 public:
  AutocastScope(bool enabled, torch::ScalarType dtype) : enabled_(enabled) {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_dtype(at::kCUDA, dtype);
    at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
    at::autocast::set_autocast_gpu_dtype(dtype);
    at::autocast::set_enabled(true);
#endif
  }
  ~AutocastScope() {
    if (!enabled_) return;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
    at::autocast::set_enabled(false);
#endif
    at::autocast::clear_cache();
  }
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool enabled_;
};

}  // namespace quantmt::train
