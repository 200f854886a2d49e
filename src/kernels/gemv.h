// Gemv: bf16 skinny matrix products for decode, where the weights must stream at full memory
// bandwidth (cuBLASLt's kernels at 1..8 rows leave bandwidth unused).
//
//   y[r, o] = sum_i x[r, i] * w[o, i] (+ bias[o])      r < rows <= kGemvMaxRows
//
// x and w are bf16 (w in HF [out, in] row-major layout), accumulation in float32, y and bias
// OutT (__nv_bfloat16, or float for the lm_head's logits). Each warp owns whole output rows of w,
// so every weight byte is read exactly once per call with 16-byte streaming loads; x (a few KB)
// is read through L1. A vectorized kernel needs in_features % 8 == 0, ldx % 8 == 0 and 16-byte
// aligned x and w; any other shape or alignment takes a scalar kernel (correct, slower).
//
// Launched with programmatic dependent launch (kernels/pdl.cuh): a call's first round of weight
// loads is issued before it waits for the previous kernel, so it overlaps that kernel (and the
// launch latency); the next kernel is let in only once every block has streamed its weights
// (late trigger: early-scheduled blocks of a following GEMV would pile onto the SMs that free up
// first, measured 6% slower end to end on Qwen2-7B decode).
//
// Launchers are asynchronous on `stream` and legal inside CUDA graph capture. They return
// cudaErrorInvalidValue for rows outside [0, kGemvMaxRows], negative sizes, or ld* smaller than
// the row width; rows == 0 or out_features == 0 launches nothing.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace kiln::kernels {

constexpr int kGemvMaxRows = 8;

template <typename OutT>
struct GemvParams {
  const __nv_bfloat16* x = nullptr;  // [rows, ldx]
  const __nv_bfloat16* w = nullptr;  // [out_features, in_features]
  const OutT* bias = nullptr;        // [out_features] or nullptr
  OutT* y = nullptr;                 // [rows, ldy]
  int rows = 0;                      // 1..kGemvMaxRows
  int64_t out_features = 0;
  int64_t in_features = 0;
  int64_t ldx = 0;  // row stride of x in elements (0 → in_features)
  int64_t ldy = 0;  // row stride of y in elements (0 → out_features)
  // Vectorized kernel only: each warp also issues bulk L2 prefetches (cp.async.bulk.prefetch) of
  // its weight rows two load rounds (8 KB) ahead of its register loads, so more bytes are in
  // flight per SM; a hint, results are identical either way. Measured slower on H100 (Qwen2-7B
  // batch-1 step 6.63 vs 5.82 ms): kept for experiments only.
  bool l2_prefetch = false;
};

template <typename OutT>
cudaError_t Gemv(const GemvParams<OutT>& params, cudaStream_t stream);

}  // namespace kiln::kernels
