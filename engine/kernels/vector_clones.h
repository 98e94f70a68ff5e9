// QUANTMT_VECTOR_CLONES before a function compiles it for AVX-512, AVX2 and
// baseline x86-64; the loader picks the best the CPU has (GCC on x86-64;
// elsewhere the plain build). Not under sanitizers: GCC instruments the
// clones' resolvers, which the loader runs before the sanitizer runtime is
// set up (a crash at startup).
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
#define QUANTMT_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define QUANTMT_VECTOR_CLONES
#endif
