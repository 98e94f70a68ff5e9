// The export dtype, checked at setup so that a bad --export_dtype fails
// before training rather than after it.
#pragma once

#include <torch/torch.h>

#include <string>

#include "quantmt/engine/status.h"

namespace quantmt::train {

// "float32", "float16" or "bfloat16" as a torch dtype.
absl::StatusOr<torch::ScalarType> StorageType(const std::string& dtype);

}  // namespace quantmt::train
