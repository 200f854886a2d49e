// FP8 (OCP E4M3, "fn": max 448, no infinities) quantization on the GPU.
//
//   QuantizeFp8: x [rows, cols] (bf16 or float32) → q [rows, cols] E4M3 bytes + float32 scales,
//     scale = amax / 448 (1 when amax == 0), q = E4M3(x / scale) rounded to nearest even and
//     saturated to ±448, per row (dynamic per-token activations, per-output-channel weights) or
//     per tensor (one scale for the whole matrix; two passes). The real value is q × scale.
//     CPU twin: src/quant (same formula, same rounding).
//
// Launchers are asynchronous on `stream`, return cudaErrorInvalidValue for negative sizes or
// cols not a multiple of 8, and are legal inside graph capture (per-row mode; per-tensor mode
// uses `amax_workspace`, one float).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kiln::kernels {

constexpr float kFp8E4M3Max = 448.0f;

struct QuantizeFp8Params {
  const void* x = nullptr;  // [rows, ldx] of bf16 (x_is_f32 false) or float32
  bool x_is_f32 = false;
  int64_t ldx = 0;  // elements; 0 → cols
  uint8_t* out = nullptr;  // [rows, cols] E4M3
  float* scales = nullptr;  // [rows], or [1] when per_tensor
  int64_t rows = 0;
  int64_t cols = 0;
  bool per_tensor = false;
  float* amax_workspace = nullptr;  // per_tensor: one float of device scratch
};

cudaError_t QuantizeFp8(const QuantizeFp8Params& params, cudaStream_t stream);

// out[i] = float(E4M3 q[i]) × scales[i / cols] (scales per row), for tests and references.
cudaError_t DequantizeFp8(const uint8_t* q, const float* scales, int64_t rows, int64_t cols,
                          float* out, cudaStream_t stream);

}  // namespace kiln::kernels
