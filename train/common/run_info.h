// What a training run ran on, in words: for the first log line and for the
// provenance of the exported model.
#pragma once

#include <torch/torch.h>

#include <string>

#include "train/common/trainer.h"

namespace quantmt::train {

// "none", "bf16" or "fp16", as the --amp flag spells them.
std::string AmpName(AmpMode amp);

// "cpu: <model name>, N threads" or "cuda: <GPU name> (N visible)".
std::string HardwareDescription(const torch::Device& device);

}  // namespace quantmt::train
