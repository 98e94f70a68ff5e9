// Writes the teacher-forced logits of a model directory on fixed inputs to a
// safetensors file, for tests/torch_reference.py to compare against PyTorch's
// own torch.nn Transformer layers.
//   quantmt-dump-logits MODEL_DIR OUTPUT.safetensors
#include <torch/torch.h>

#include <iostream>

#include "checkpoint/safetensors.h"
#include "model/model_io.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: quantmt-dump-logits MODEL_DIR OUTPUT.safetensors\n";
    return 2;
  }
  auto model = quantmt::LoadTransformer(argv[1]);
  if (!model.ok()) {
    std::cerr << model.status().message() << "\n";
    return 1;
  }
  const auto& config = (*model)->config();
  const int64_t pad = config.pad_id, eos = config.eos_id, bos = config.bos_id;
  // Two sentences of different lengths: the second is padded.
  const std::vector<int64_t> source_ids = {5,  6,  7,   8,   9,   10,  11,  12,  eos,
                                           13, 14, eos, pad, pad, pad, pad, pad, pad};
  const std::vector<int64_t> target_ids = {bos, 20, 21, 22, 23, 24, bos, 27, 28, 29, 30, 31};
  auto source = torch::tensor(source_ids).view({2, 9});
  auto target = torch::tensor(target_ids).view({2, 6});
  torch::NoGradGuard no_grad;
  auto logits = (*model)->Forward(source, target).contiguous();
  using quantmt::checkpoint::DType;
  std::vector<quantmt::checkpoint::TensorToWrite> tensors = {
      {"logits",
       DType::kF32,
       {2, 6, logits.size(2)},
       logits.data_ptr(),
       static_cast<size_t>(logits.nbytes())},
      {"source_ids", DType::kI64, {2, 9}, source.data_ptr(), static_cast<size_t>(source.nbytes())},
      {"target_ids", DType::kI64, {2, 6}, target.data_ptr(), static_cast<size_t>(target.nbytes())},
  };
  auto status = quantmt::checkpoint::WriteSafetensors(argv[2], tensors);
  if (!status.ok()) {
    std::cerr << status.message() << "\n";
    return 1;
  }
  return 0;
}
