// RoPE + q/k norm + bias + KV-cache write kernel. Block = one token; warp = one head at a time
// (heads [0, H) are q heads, [H, H + Hkv) are kv heads: k rotated into k_cache, v copied into
// v_cache). Lane l owns rotation pairs l, l + 32, ... (at most 4 for head_dim <= 256).
#pragma once

#include "kernels/common.cuh"
#include "kernels/pdl.cuh"
#include "kernels/rope.h"

namespace kiln::kernels {

constexpr int kRopeMaxPairsPerLane = 4;  // head_dim <= 256

// Rotates the pair (x, y) by angle pos · inv_freq, scaled (rope.h); shared with the GEMV's RoPE
// epilogue (gemv.cuh), which must round identically.
__device__ __forceinline__ void RopeRotate(float pos, float inv_freq, float scaling, float& x,
                                           float& y) {
  float s, c;
  sincosf(pos * inv_freq, &s, &c);
  c *= scaling;
  s *= scaling;
  const float rx = x * c - y * s;
  const float ry = y * c + x * s;
  x = rx;
  y = ry;
}

template <typename T>
__global__ void RopeKvCacheKernel(RopeKvCacheParams<T> p) {
  PdlLaunchDependents();
  PdlWait();
  const int t = blockIdx.x;
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
  const int num_warps = blockDim.x >> 5;
  const int D = p.head_dim;
  const int half = D / 2;
  const float pos = static_cast<float>(p.positions[t]);
  const int64_t slot = p.slot_mapping != nullptr ? p.slot_mapping[t] : -1;

  for (int h = warp; h < p.num_heads + 2 * p.num_kv_heads; h += num_warps) {
    const bool is_q = h < p.num_heads;
    const bool is_k = !is_q && h < p.num_heads + p.num_kv_heads;
    const bool is_v = !is_q && !is_k;
    if (!is_q && slot < 0) continue;
    const int kvh = is_k ? h - p.num_heads : h - p.num_heads - p.num_kv_heads;
    const T* src;
    const T* bias;
    const T* norm_weight;
    T* dst;
    if (is_q) {
      src = p.q + t * p.q_stride + static_cast<int64_t>(h) * D;
      dst = const_cast<T*>(src);
      bias = p.q_bias != nullptr ? p.q_bias + h * D : nullptr;
      norm_weight = p.q_norm_weight;
    } else if (is_k) {
      src = p.k + t * p.k_stride + static_cast<int64_t>(kvh) * D;
      dst = p.k_cache + (slot * p.num_kv_heads + kvh) * D;
      bias = p.k_bias != nullptr ? p.k_bias + kvh * D : nullptr;
      norm_weight = p.k_norm_weight;
    } else {
      src = p.v + t * p.v_stride + static_cast<int64_t>(kvh) * D;
      dst = p.v_cache + (slot * p.num_kv_heads + kvh) * D;
      bias = p.v_bias != nullptr ? p.v_bias + kvh * D : nullptr;
      norm_weight = nullptr;
    }
    // Pair i: elements (ia, ib).
    float a[kRopeMaxPairsPerLane], b[kRopeMaxPairsPerLane];
    float sum_sq = 0.0f;
#pragma unroll
    for (int j = 0; j < kRopeMaxPairsPerLane; ++j) {
      const int i = lane + 32 * j;
      a[j] = b[j] = 0.0f;
      if (i < half) {
        const int ia = p.interleaved ? 2 * i : i;
        const int ib = p.interleaved ? 2 * i + 1 : i + half;
        a[j] = ToFloat(src[ia]);
        b[j] = ToFloat(src[ib]);
        if (bias != nullptr) {
          a[j] += ToFloat(bias[ia]);
          b[j] += ToFloat(bias[ib]);
        }
        sum_sq += a[j] * a[j] + b[j] * b[j];
      }
    }
    float inv_rms = 1.0f;
    if (norm_weight != nullptr) inv_rms = rsqrtf(WarpSum(sum_sq) / D + p.norm_eps);
#pragma unroll
    for (int j = 0; j < kRopeMaxPairsPerLane; ++j) {
      const int i = lane + 32 * j;
      if (i < half) {
        const int ia = p.interleaved ? 2 * i : i;
        const int ib = p.interleaved ? 2 * i + 1 : i + half;
        float x = a[j], y = b[j];
        if (norm_weight != nullptr) {
          x = x * inv_rms * ToFloat(norm_weight[ia]);
          y = y * inv_rms * ToFloat(norm_weight[ib]);
        }
        if (!is_v) RopeRotate(pos, p.inv_freq[i], p.attention_scaling, x, y);
        dst[ia] = FromFloat<T>(x);
        dst[ib] = FromFloat<T>(y);
      }
    }
  }
}

}  // namespace kiln::kernels
