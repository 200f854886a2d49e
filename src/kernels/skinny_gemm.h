// SkinnyGemm: bf16 matrix products with few activation rows (decode at batch 2..64), where the
// weights must stream at full memory bandwidth and the tensor cores have work to spare.
//
//   y[r, o] = sum_i x[r, i] * w[o, i] (+ bias[o])      2 <= n <= kSkinnyGemmMaxRows, r < n
//
// x and w are bf16 (w in HF [out, in] row-major layout), accumulation in float32 (mma.sync
// m16n8k16 on the tensor cores), y and bias OutT (__nv_bfloat16, or float for the lm_head's
// logits). Every weight byte is read once per call, straight from global memory into registers
// (16-byte streaming loads); x is staged per block in shared memory (skinny_gemm.cuh).
//
// Not responsible for: 1-row products (kernels::Gemv), other dtypes, k % 32 != 0 or unaligned
// operands (the caller keeps cuBLASLt for those: the launcher rejects them).
//
// Status: NOT ROUTED. kiln::cuda::Gemm does not call it. Measured on H100 (docs/PERFORMANCE.md,
// "Skinny tensor-core GEMM for batch 2–64 decode"): at 2..8 rows the Qwen2-7B decode GEMM sum
// is 0.2–1.9% below cuBLASLt's (cold weights, gemv_bench --skinny; about the run-to-run noise),
// at 16 rows 2% above, at 32 and 64 rows 15% and 36% above (ncu at 64 rows: ~370
// instructions per warp and 64-k iteration, ~2.2 warps per scheduler stalled on weight loads and
// mma latency: latency- and issue-bound, DRAM about half busy). Routed for 2..8 rows inside kiln's
// decode graph, the batch-8 step went from 6.10 to 7.79 ms with the PDL launch below, and back to
// parity (6.13 ms) launched without PDL: the early-launched blocks of a one-wave grid interact
// badly with the neighbouring kernels (not understood further).
//
// Split K: when a shape has too few 64-feature tiles (the default) to fill the card, every tile's k
// range is cut into `splits` parts computed by separate blocks; their float32 partial sums go to a
// caller-provided workspace and the last block of a tile (atomic counter, which it resets to 0)
// adds them in split order, so results never depend on timing. The split count depends only on
// (m, k) and the card's SM count, never on n, so a row's result does not depend on the batch.
//
// Workspace contract: SkinnyGemmWorkspaceBytes(n, m, k) bytes (0: none needed, may be null),
// 256-byte aligned, zero-filled once before its first use; every call leaves its counters at zero
// again. One workspace may serve any sequence of calls on one stream, but never two calls that
// can run concurrently. SkinnyGemmMaxWorkspaceBytes() covers every shape on the current device.
//
// Launched with programmatic dependent launch (pdl.cuh): the first weight loads are issued before
// PdlWait, x, the workspace and y only after it; PdlLaunchDependents comes after the main loop.
// Asynchronous on `stream`, legal inside CUDA graph capture. Returns cudaErrorInvalidValue for
// n outside [2, kSkinnyGemmMaxRows], m < 1, k < 32 or k % 32 != 0, ldx < k or ldx % 8 != 0,
// ldy < m, x or w not 16-byte aligned, null pointers, or a missing/too small/misaligned workspace.
#pragma once

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace kiln::kernels {

constexpr int kSkinnyGemmMinRows = 2;
constexpr int kSkinnyGemmMaxRows = 64;

template <typename OutT>
struct SkinnyGemmParams {
  const __nv_bfloat16* x = nullptr;  // [n, ldx]
  const __nv_bfloat16* w = nullptr;  // [m, k]
  const OutT* bias = nullptr;        // [m] or nullptr
  OutT* y = nullptr;                 // [n, ldy]
  int n = 0;                         // kSkinnyGemmMinRows..kSkinnyGemmMaxRows
  int64_t m = 0;                     // out features
  int64_t k = 0;                     // in features, a multiple of 32
  int64_t ldx = 0;                   // row stride of x in elements (0 → k), a multiple of 8
  int64_t ldy = 0;                   // row stride of y in elements (0 → m)
  void* workspace = nullptr;         // see the workspace contract above
  size_t workspace_bytes = 0;
  // For A/B measurements only (gemv_bench); the workspace functions assume the defaults.
  // Tile shape: 0 = the default; 1..3 = alternatives listed in skinny_gemm.cu.
  int variant = 0;
  // Split K until the grid has about this many blocks per SM (0: the default, 4).
  int split_blocks_per_sm = 0;
};

// Workspace a call of this shape needs on the current device (0 when it does not split K).
size_t SkinnyGemmWorkspaceBytes(int n, int64_t m, int64_t k);
// The largest SkinnyGemmWorkspaceBytes over every shape, on the current device.
size_t SkinnyGemmMaxWorkspaceBytes();

template <typename OutT>
cudaError_t SkinnyGemm(const SkinnyGemmParams<OutT>& params, cudaStream_t stream);

}  // namespace kiln::kernels
