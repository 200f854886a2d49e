// RMSNorm and fused residual-add + RMSNorm over rows of width hidden_size
// (CPU twins: cpu::RmsNorm, cpu::AddRmsNorm).
//
//   residual == nullptr: out[t, :] = x[t, :] * rsqrt(mean(x[t, :]^2) + eps) * weight
//   residual != nullptr: residual[t, :] += x[t, :] (stored in T); out = RmsNorm(residual[t, :])
//                        (the norm is computed from the stored, rounded residual, so a later
//                        reader of residual sees exactly what was normalized)
// Sums of squares in float32. out may alias x. Launchers are asynchronous on `stream`; T is float
// or __nv_bfloat16; rows are contiguous (stride hidden_size).
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

namespace kiln::kernels {

template <typename T>
struct RmsNormParams {
  const T* x = nullptr;     // [num_tokens, hidden_size]
  T* residual = nullptr;    // [num_tokens, hidden_size] in/out, or nullptr (plain RMSNorm)
  const T* weight = nullptr;  // [hidden_size]
  T* out = nullptr;         // [num_tokens, hidden_size]
  int num_tokens = 0;
  int hidden_size = 0;
  float eps = 1e-6f;
};

template <typename T>
cudaError_t RmsNorm(const RmsNormParams<T>& params, cudaStream_t stream);

}  // namespace kiln::kernels
