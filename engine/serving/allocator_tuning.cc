#include "serving/allocator_tuning.h"

#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace quantmt {

void KeepFreedMemoryForReuse() {
  static std::once_flag once;
  std::call_once(once, [] {
#if defined(__GLIBC__)
    // The largest mmap threshold glibc accepts on 64-bit (32 MiB): smaller
    // blocks come from the heap and are reused.
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    // Freed memory stays in the process up to 1 GiB above the heap top.
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 64 << 20);
#endif
  });
}

}  // namespace quantmt
