#include "model/packed_product.h"

#include <ATen/Parallel.h>

#include "kernels/dnnl_matmul.h"

namespace quantmt {

std::shared_ptr<kernels::DnnlMatmul> PackFloatWeight(const torch::Tensor& weight,
                                                     const torch::Tensor& bias) {
  if (!weight.is_cpu() || weight.scalar_type() != torch::kFloat32) return nullptr;
  if (bias.defined() && (!bias.is_cpu() || bias.scalar_type() != torch::kFloat32)) return nullptr;
  torch::NoGradGuard no_grad;
  auto w = weight.contiguous();
  auto b = bias.defined() ? bias.contiguous() : bias;
  auto matmul = kernels::DnnlMatmul::Create(kernels::DnnlMatmul::Kind::kFloat32, w.data_ptr(),
                                            b.defined() ? b.data_ptr<float>() : nullptr, w.size(0),
                                            w.size(1));
  if (!matmul.ok()) return nullptr;
  return std::move(*matmul);
}

bool PackedProductServes(const torch::Tensor& input) {
  return input.is_cpu() && input.scalar_type() == torch::kFloat32 && !torch::GradMode::is_enabled();
}

torch::Tensor PackedProduct(kernels::DnnlMatmul& matmul, const torch::Tensor& input) {
  auto x = input.reshape({-1, matmul.k()}).contiguous();
  auto output = torch::empty({x.size(0), matmul.n()});
  matmul.Run(x.data_ptr(), x.size(0), output.data_ptr(), at::get_num_threads());
  auto sizes = input.sizes().vec();
  sizes.back() = matmul.n();
  return output.view(sizes);
}

}  // namespace quantmt
