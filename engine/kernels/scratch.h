// Grow-only scratch buffers for the CPU kernels.
#pragma once

#include <cstddef>
#include <vector>

namespace quantmt::kernels {

// At least `count` elements of `buffer`, never shrinking it: resize()
// zero-fills every element it adds, and the layers of a decoding step
// alternate between widths (512, 2,048, 8,000), so shrinking and growing
// again zero-filled up to 2 MB a call (memset was 3% of a batch-64 INT8
// decode under perf). Callers overwrite the scratch before reading it.
template <typename T>
T* Scratch(std::vector<T>& buffer, size_t count) {
  if (buffer.size() < count) buffer.resize(count);
  return buffer.data();
}

}  // namespace quantmt::kernels
