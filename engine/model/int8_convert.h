// A float Transformer -> its int8 twin, in memory. quantmt-quantize writes
// the result as a checkpoint; the decoding benchmark serves it directly; the
// QAT export sets calibrated input scales on it before writing.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "model/transformer.h"

namespace quantmt {

// Builds a Transformer with float_model's architecture and `quantization`
// ("int8_dynamic" or "int8_static" with its params). Each Int8Linear gets
// the quantized weights of the float layer of the same name; every other
// tensor is copied. Static input scales start at 1 (the caller sets them).
// The result is on the CPU, not yet prepared for inference.
// `progress`, if given, is called after each quantized layer.
using QuantizeProgress = std::function<void(int done, int total, const std::string& layer)>;
absl::StatusOr<std::shared_ptr<Transformer>> QuantizeTransformer(
    Transformer& float_model, const QuantizationConfig& quantization,
    const QuantizeProgress& progress = nullptr);

}  // namespace quantmt
