// Helpers shared by the kernel benchmarks (attention_bench, gemv_bench); not part of any library.
#pragma once

#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>

// Exits with the failing expression and CUDA's message (benchmarks have nothing to recover).
#define CHECK_CUDA(expr)                                                                         \
  do {                                                                                           \
    const cudaError_t _e = (expr);                                                               \
    if (_e != cudaSuccess) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, cudaGetErrorString(_e)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)
