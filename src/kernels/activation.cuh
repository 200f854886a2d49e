// SiLU-and-mul kernel: one thread per output vector (16 bytes) or per element (unaligned widths).
#pragma once

#include "kernels/activation.h"
#include "kernels/common.cuh"
#include "kernels/pdl.cuh"

namespace kiln::kernels {

__device__ __forceinline__ float Silu(float g) { return g / (1.0f + expf(-g)); }

template <typename T, bool kVectorized>
__global__ void SiluMulKernel(SiluMulParams<T> p) {
  PdlLaunchDependents();
  PdlWait();
  constexpr int kVe = kVectorized ? kVecElems<T> : 1;
  const int per_row = p.intermediate_size / kVe;
  const int64_t total = static_cast<int64_t>(p.num_tokens) * per_row;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t t = i / per_row;
    const int j = static_cast<int>(i - t * per_row) * kVe;
    const T* gate = p.gate_up + t * 2 * p.intermediate_size + j;
    const T* up = gate + p.intermediate_size;
    T* out = p.out + t * p.intermediate_size + j;
    if constexpr (kVectorized) {
      float g[kVe], u[kVe];
      LoadVec(gate, g);
      LoadVec(up, u);
#pragma unroll
      for (int e = 0; e < kVe; ++e) g[e] = Silu(g[e]) * u[e];
      StoreVec(out, g);
    } else {
      *out = FromFloat<T>(Silu(ToFloat(*gate)) * ToFloat(*up));
    }
  }
}

}  // namespace kiln::kernels
