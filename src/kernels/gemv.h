// Gemv: bf16 skinny matrix products for decode, where the weights must stream at full memory
// bandwidth (cuBLASLt's kernels at 1..8 rows leave bandwidth unused).
//
//   y[r, o] = sum_i x[r, i] * w[o, i] (+ bias[o])      r < rows <= kGemvMaxRows
//
// x and w are bf16 (w in HF [out, in] row-major layout), accumulation in float32, y and bias
// OutT (__nv_bfloat16, or float for the lm_head's logits). Every weight byte is read exactly once
// per call with 16-byte streaming loads (at 1 – 3 rows, four warps share each output row; from 4
// rows on, each warp owns whole rows: gemv.cuh); x (a few KB) is read through L1. A vectorized
// kernel needs in_features % 8 == 0, ldx % 8 == 0 and 16-byte aligned x and w; any other shape or
// alignment takes a scalar kernel (correct, slower).
//
// Launched with programmatic dependent launch (kernels/pdl.cuh): a call's first weight loads are
// issued before it waits for the previous kernel, so they overlap that kernel (and the launch
// latency); the next kernel is let in only once every block has streamed its weights
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

// Activation rows that take the split-row kernel (gemv.cuh: four warps per weight row); more go
// to one warp per row. Qwen2-7B step GEMMs on H100 (gemv_bench, cold weights): 2 rows 5.32 vs
// 5.85 ms (one warp per row) and 5.79 (cuBLASLt), 3 rows 5.44 vs 5.66 / 5.61 ms, 4 rows 5.76 vs
// 5.98 / 5.60 ms (floor 4.72): from 4 rows the CUDA cores no longer keep up and cuBLASLt wins,
// which is where Gemm stops routing here (kiln::cuda::Gemm::kDefaultGemvMaxRows).
constexpr int kGemvRowKernelMaxRows = 3;

// Batch-1 fusions, which remove the short kernels that would otherwise run between two GEMVs
// of a decode step (and their place in the chain). They compute what the unfused chain (RmsNorm
// then Gemv; Gemv then SiluMul or RopeKvCache) computes, with the same roundings; only the float32
// summation order of the dot products differs from the plain 1-row Gemv (which splits a row over
// four warps), so a bf16 output may land on the neighbouring value. kernels_test checks both.
//
// Prologue: instead of reading x, every block computes the 1-row x itself into shared memory.
enum class GemvPrologue {
  kNone,
  // r = addend + residual rounded to bf16 (r = residual when addend is null);
  // x = RmsNorm(r) · norm_weight exactly as kernels::RmsNorm rounds it; block 0 stores r to
  // residual_out (required with an addend; must alias neither residual nor addend, since other
  // blocks still read those: callers ping-pong two residual buffers).
  kAddRmsNorm,
};

// x of at most this many features fits the prologue's shared-memory row (bf16, 48 KB).
constexpr int64_t kGemvPrologueMaxFeatures = 24576;

struct GemvPrologueParams {
  GemvPrologue kind = GemvPrologue::kNone;
  const __nv_bfloat16* addend = nullptr;       // [in_features] or nullptr
  const __nv_bfloat16* residual = nullptr;     // [in_features]
  __nv_bfloat16* residual_out = nullptr;       // [in_features] (with an addend)
  const __nv_bfloat16* norm_weight = nullptr;  // [in_features]
  float eps = 1e-6f;
};

struct GemvRopeParams {
  bool enabled = false;
  int num_heads = 0;
  int num_kv_heads = 0;
  int head_dim = 0;
  const int32_t* positions = nullptr;  // [1]
  const float* inv_freq = nullptr;     // [head_dim / 2]
  float attention_scaling = 1.0f;
  const int64_t* slot_mapping = nullptr;  // [1]
  __nv_bfloat16* k_cache = nullptr;       // [num_slots, num_kv_heads, head_dim]
  __nv_bfloat16* v_cache = nullptr;       // [num_slots, num_kv_heads, head_dim]
};

template <typename OutT>
struct GemvParams {
  const __nv_bfloat16* x = nullptr;  // [rows, ldx]
  const __nv_bfloat16* w = nullptr;  // [out_features, in_features]; nullptr when w_fp8 is set
  const OutT* bias = nullptr;        // [out_features] or nullptr
  OutT* y = nullptr;                 // [rows, ldy]
  int rows = 0;                      // 1..kGemvMaxRows
  int64_t out_features = 0;
  int64_t in_features = 0;
  int64_t ldx = 0;  // row stride of x in elements (0 → in_features)
  int64_t ldy = 0;  // row stride of y in elements (0 → out_features)
  // kind != kNone: x is unused (may be null) and computed per block as described above; needs
  // rows == 1, in_features % 8 == 0, in_features <= kGemvPrologueMaxFeatures, 16-byte aligned
  // pointers, y distinct from the prologue's buffers; otherwise the launcher returns
  // cudaErrorInvalidValue.
  GemvPrologueParams prologue;
  // SiLU·mul epilogue: w holds out_features = 2 · I rows (gate rows, then up rows) and
  //   y[j] = silu(g) · u,  g = OutT(x·w[j] + bias[j]),  u = OutT(x·w[I + j] + bias[I + j])
  // for j < I (one block computes both rows), i.e. kernels::SiluMul applied to the plain Gemv's
  // output, rounded alike; y has I entries (ldy ≥ I). Needs rows == 1, even out_features and
  // the vectorized kernel's shapes (cudaErrorInvalidValue otherwise).
  bool silu_mul_epilogue = false;
  // RoPE + KV-cache epilogue (rope.enabled; Qwen2 / Llama attention input without q/k norms,
  // rotate-half pairs): y = [q | k | v] of num_heads, num_kv_heads, num_kv_heads heads; one block
  // computes both rows (i, i + D/2) of a head's rotation pair, rounds them to OutT as the plain
  // Gemv stores them and applies kernels::RopeKvCache's arithmetic: q rotated into y, k rotated
  // into k_cache and v into v_cache at slot_mapping[0] (no cache write when the slot is < 0); the
  // k and v parts of y are not written. Needs rows == 1, OutT bf16, even head_dim and
  // out_features == (num_heads + 2 num_kv_heads) · head_dim; not with silu_mul_epilogue.
  GemvRopeParams rope;
  // FP8 weights instead of w (W8A16; w stays nullptr): E4M3 bytes [out_features, in_features]
  // and one float32 scale per output row, y = (x · q_row) × w_scale[row] (+ bias); the
  // vectorized kernels need in_features % 16 == 0. Every kernel and fusion above supports it.
  const uint8_t* w_fp8 = nullptr;
  const float* w_scale = nullptr;  // [out_features] (with w_fp8)
};

template <typename OutT>
cudaError_t Gemv(const GemvParams<OutT>& params, cudaStream_t stream);

}  // namespace kiln::kernels
