// RMSNorm kernels: one block per row. The vectorized kernel keeps the row in registers
// (kMaxVecs 16-byte vectors per thread), so x/residual are read once and out written once.
#pragma once

#include "kernels/common.cuh"
#include "kernels/pdl.cuh"
#include "kernels/rms_norm.h"

namespace kiln::kernels {

// The vectorized kernel's launch shape: kRmsNormMaxVecs vectors per thread, a multiple of 32
// threads, at least 64. Thread t sums vectors t, t + threads, ... in that order; the GEMV's fused
// add+RMSNorm prologue (gemv.cuh) reproduces this order to round exactly as RmsNorm does.
constexpr int kRmsNormMaxVecs = 4;
__host__ __device__ constexpr int RmsNormVecThreads(int num_vecs) {
  const int threads = ((num_vecs + kRmsNormMaxVecs - 1) / kRmsNormMaxVecs + 31) / 32 * 32;
  return threads < 64 ? 64 : threads;
}

template <typename T, int kMaxVecs>
__global__ void RmsNormVecKernel(RmsNormParams<T> p) {
  constexpr int kVe = kVecElems<T>;
  PdlLaunchDependents();
  PdlWait();
  const int64_t row = static_cast<int64_t>(blockIdx.x) * p.hidden_size;
  const int num_vecs = p.hidden_size / kVe;
  float vals[kMaxVecs][kVe];
  float sum_sq = 0.0f;
#pragma unroll
  for (int k = 0; k < kMaxVecs; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < num_vecs) {
      LoadVec(p.x + row + i * kVe, vals[k]);
      if (p.residual != nullptr) {
        float r[kVe];
        LoadVec(p.residual + row + i * kVe, r);
#pragma unroll
        for (int e = 0; e < kVe; ++e) vals[k][e] = ToFloat(FromFloat<T>(vals[k][e] + r[e]));
        StoreVec(p.residual + row + i * kVe, vals[k]);
      }
#pragma unroll
      for (int e = 0; e < kVe; ++e) sum_sq += vals[k][e] * vals[k][e];
    }
  }
  const float inv_rms = rsqrtf(BlockSum(sum_sq) / p.hidden_size + p.eps);
#pragma unroll
  for (int k = 0; k < kMaxVecs; ++k) {
    const int i = threadIdx.x + k * blockDim.x;
    if (i < num_vecs) {
      float w[kVe];
      LoadVec(p.weight + i * kVe, w);
#pragma unroll
      for (int e = 0; e < kVe; ++e) vals[k][e] = vals[k][e] * inv_rms * w[e];
      StoreVec(p.out + row + i * kVe, vals[k]);
    }
  }
}

// Any width and alignment: two passes over the row (the second hits L1/L2).
template <typename T>
__global__ void RmsNormScalarKernel(RmsNormParams<T> p) {
  PdlLaunchDependents();
  PdlWait();
  const int64_t row = static_cast<int64_t>(blockIdx.x) * p.hidden_size;
  float sum_sq = 0.0f;
  for (int i = threadIdx.x; i < p.hidden_size; i += blockDim.x) {
    float v = ToFloat(p.x[row + i]);
    if (p.residual != nullptr) {
      const T r = FromFloat<T>(v + ToFloat(p.residual[row + i]));
      p.residual[row + i] = r;
      v = ToFloat(r);
    }
    sum_sq += v * v;
  }
  const float inv_rms = rsqrtf(BlockSum(sum_sq) / p.hidden_size + p.eps);
  for (int i = threadIdx.x; i < p.hidden_size; i += blockDim.x) {
    const float v = ToFloat(p.residual != nullptr ? p.residual[row + i] : p.x[row + i]);
    p.out[row + i] = FromFloat<T>(v * inv_rms * ToFloat(p.weight[i]));
  }
}

}  // namespace kiln::kernels
