// Debian's civetweb 1.15 starts its worker threads with a fixed 100 KiB stack
// (USE_STACK_SIZE). glibc carves a thread's static TLS out of its stack, and
// in a process that also holds LibTorch, gRPC and their dependencies the TLS
// alone nearly fills 100 KiB, so pthread_create fails with EINVAL and
// civetweb reports "Cannot create first worker thread". This definition in
// the server binary takes precedence over libc's for every caller and
// raises requests below 1 MiB to 1 MiB; larger requests pass unchanged.
#include <dlfcn.h>
#include <pthread.h>

#include <algorithm>

extern "C" int pthread_attr_setstacksize(pthread_attr_t* attr, size_t size) {
  using SetStackSize = int (*)(pthread_attr_t*, size_t);
  static const auto libc_set_stack_size =
      reinterpret_cast<SetStackSize>(dlsym(RTLD_NEXT, "pthread_attr_setstacksize"));
  return libc_set_stack_size(attr, std::max<size_t>(size, 1 << 20));
}
