// glibc malloc settings for inference.
//
// A decoding step allocates and frees the same large tensors every step
// (logits of [batch, vocab], FFN activations, the encoder's outputs). With
// glibc's defaults, blocks above the dynamic mmap threshold are mapped and
// unmapped each time and the heap top is trimmed back to the system, so every
// step pays page faults on fresh memory: at batch 64 they took a sixth of the
// decoding time (quantmt-bench-decode under perf). Keeping freed memory for
// reuse makes resident memory settle at the peak working set instead.
#pragma once

namespace quantmt {

// Once per process (later calls do nothing); a no-op off glibc.
void KeepFreedMemoryForReuse();

}  // namespace quantmt
