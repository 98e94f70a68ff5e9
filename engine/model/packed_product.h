// The CPU float32 serving product, shared by FloatLinear and the layers that
// decode their weight at load (DAQ): a weight [out, in] and bias copied once
// into oneDNN's packed layout (kernels/dnnl_matmul.h), then run without
// autograd (about twice OpenBLAS's speed here; bench/gemm_kernels.cc).
#pragma once

#include <torch/torch.h>

#include <memory>

namespace quantmt {
namespace kernels {
class DnnlMatmul;
}

// Packs `weight` [out, in] and `bias` [out] (may be undefined). Null when
// either is not a CPU float32 tensor or this build has no oneDNN: LibTorch
// serves then.
std::shared_ptr<kernels::DnnlMatmul> PackFloatWeight(const torch::Tensor& weight,
                                                     const torch::Tensor& bias);

// Whether a packed product serves `input`: CPU float32 with autograd off
// (training keeps LibTorch, which can differentiate).
bool PackedProductServes(const torch::Tensor& input);

// input [..., in] -> [..., out] through a packed weight.
torch::Tensor PackedProduct(kernels::DnnlMatmul& matmul, const torch::Tensor& input);

}  // namespace quantmt
