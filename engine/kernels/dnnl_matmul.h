// oneDNN matrix multiplication with weights prepacked once: C = A * W^T.
//
// Torch-free, so that benchmarks and tests can call it directly. Two kinds:
// float32 (A f32, W f32, optional f32 bias, C f32) and int8 (A s8, W s8,
// C s32: exact integer accumulation; the caller applies the scales).
// oneDNN picks the weight layout for the CPU it runs on (VNNI blocks for
// int8); the packed copy is made in the constructor, so Run does no reorder.
//
// oneDNN from Debian runs on OpenMP (libgomp), the pool LibTorch uses, so
// both share one pool: Run uses the caller's thread count (one thread for
// small products, where waking a worker costs more than it saves) and leaves
// the calling thread's OpenMP setting as it found it.
#pragma once

#include <cstdint>
#include <memory>

#include "quantmt/engine/status.h"

namespace quantmt::kernels {

// Whether this build has oneDNN (QUANTMT_WITH_DNNL).
bool HaveDnnl();

class DnnlMatmul {
 public:
  enum class Kind { kFloat32, kInt8 };

  // weight: [n, k] row-major (the PyTorch Linear layout), float or int8 by
  // kind; bias: float [n] or null (kFloat32 only). Both are copied.
  // Unimplemented when built without oneDNN.
  static absl::StatusOr<std::unique_ptr<DnnlMatmul>> Create(Kind kind, const void* weight,
                                                            const float* bias, int64_t n,
                                                            int64_t k);
  virtual ~DnnlMatmul() = default;

  // a: [m, k] row-major (f32 or s8 by kind); c: [m, n] row-major (f32 or
  // s32). Runs on up to `threads` OpenMP threads. Thread-safe: concurrent
  // calls on one object run at once, each with its own scratchpad.
  virtual void Run(const void* a, int64_t m, void* c, int threads) = 0;

  virtual int64_t n() const = 0;
  virtual int64_t k() const = 0;
};

}  // namespace quantmt::kernels
