// FP8 device helpers and kernels (see fp8.h).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include "kernels/common.cuh"
#include "kernels/fp8.h"

namespace kiln::kernels {

// E4M3 byte of x (round to nearest even, saturate to ±448; NaN stays NaN).
__device__ __forceinline__ uint8_t FloatToFp8(float x) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
}

// Two E4M3 bytes (low byte first) → two floats, exact.
__device__ __forceinline__ float2 Fp8x2ToFloat2(uint16_t v) {
  const __half2_raw h = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(v), __NV_E4M3);
  return __half22float2(*reinterpret_cast<const __half2*>(&h));
}

// 16 E4M3 bytes (one 16-byte vector) → 16 floats.
__device__ __forceinline__ void Fp8Unpack16(const uint4& v, float* out) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 lo = Fp8x2ToFloat2(static_cast<uint16_t>(words[i] & 0xffffu));
    const float2 hi = Fp8x2ToFloat2(static_cast<uint16_t>(words[i] >> 16));
    out[4 * i] = lo.x;
    out[4 * i + 1] = lo.y;
    out[4 * i + 2] = hi.x;
    out[4 * i + 3] = hi.y;
  }
}

// amax / 448, 1 for an all-zero group: the CPU twin's rule (src/quant/fp8_quant.h).
__device__ __forceinline__ float Fp8Scale(float amax) {
  return amax > 0.0f ? amax / kFp8E4M3Max : 1.0f;
}

}  // namespace kiln::kernels
