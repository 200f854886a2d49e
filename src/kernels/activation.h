// SiLU-and-mul, the gated MLP activation (CPU twin: cpu::SiluMul):
//   out[t, j] = silu(gate_up[t, j]) * gate_up[t, inter + j],   silu(g) = g / (1 + exp(-g))
// computed in float32 and rounded once to T. Launchers are asynchronous on `stream`; T is float
// or __nv_bfloat16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace kiln::kernels {

template <typename T>
struct SiluMulParams {
  const T* gate_up = nullptr;  // [num_tokens, 2 * intermediate_size] (gate | up)
  T* out = nullptr;            // [num_tokens, intermediate_size]
  int num_tokens = 0;
  int intermediate_size = 0;
};

template <typename T>
cudaError_t SiluMul(const SiluMulParams<T>& params, cudaStream_t stream);

}  // namespace kiln::kernels
