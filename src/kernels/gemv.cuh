// Gemv kernels (see gemv.h).
//
// Plain products of 1..kGemvRowKernelMaxRows activation rows (batch-1 decode's o, down and
// lm_head; every product at batch 2 and 3: GemvRowKernel): kGemvSplit warps share each output
// row, warp p of the row taking the row's 16-byte vectors p·32 + lane + k·32·kGemvSplit; each
// lane keeps one load in flight while it multiplies the previous one
// (ld.global.nc, no L1 allocation, 256-byte L2 prefetch), accumulates in float32, and the row's
// warps combine their warp sums in shared memory in a fixed order; one row per 4-warp block, so
// the last wave spreads evenly over the SMs. Measured on H100 against one warp per row with 8
// loads in flight per lane, in a 113-GEMV Qwen2-7B chain: 4.65 vs 5.12 ms (floor 4.69 ms at copy
// bandwidth; o 89 vs 75% of copy bandwidth, down 98 vs 87%): many short, always-busy streams beat
// few deep ones.
//
// Everything else (GemvVecKernel): one warp per kWarpRows output rows, kUnroll × kWarpRows
// 16-byte weight loads in flight per lane, x through L1 (or shared memory with a prologue); at 3+
// activation rows two weight rows share each x load. The fused batch-1 kernels (prologue, pairing
// epilogues) stay on this design: with four warps per row a prologue block covers a quarter of
// the rows, and gate_up's 9,472 blocks then recompute the norm wave after wave (Qwen2-7B step
// 6.67 vs 5.46 ms on H100).
//
// Programmatic dependent launch (pdl.cuh): the first weight load is issued before PdlWait
// (weights never depend on the previous kernel), and PdlLaunchDependents comes only after the
// main loop. Measured on H100 (Qwen2-7B decode, PERFORMANCE.md): an early trigger lets the next
// GEMV's blocks fill the SMs that free up first, unbalancing it (6.17 vs 5.79 ms per step); a
// grid of one resident wave splitting the bytes statically loses to blocks that start late
// behind a co-resident small kernel (6.8 ms); bulk L2 prefetches of the next rounds cost more
// than they hide (6.17 – 6.63 ms).
//
// Batch-1 fusions (gemv.h): with the add+RMSNorm prologue every block computes the whole x row
// into shared memory after PdlWait (two passes over the row, the first in RmsNormVecKernel's
// order so the rounding matches), then the main loop reads x from shared memory; the per-block
// recomputation reads the row's inputs from L2 once per block, hence two or four weight rows per
// warp there. The SiLU·mul epilogue pairs gate row j and up row I + j in one warp, the RoPE
// epilogue rows i and i + D/2 of a head. A SiLU·mul prologue on the down GEMV (each block
// recomputing the 18,944-wide activation from 75 KB of gate_up) measured 7 µs a call slower than
// SiluMul + Gemv on H100 and was dropped.
#pragma once

#include "kernels/activation.cuh"
#include "kernels/common.cuh"
#include "kernels/fp8.cuh"
#include "kernels/gemv.h"
#include "kernels/pdl.cuh"
#include "kernels/rms_norm.cuh"
#include "kernels/rope.cuh"

namespace kiln::kernels {

constexpr int kGemvWarps = 4;  // GemvVecKernel / GemvScalarKernel block
constexpr int kGemvSplit = 4;  // GemvRowKernel: warps per output row (one row per block)

// Streams 16 bytes of weights: read-only path, no L1 allocation (each byte is used once).
__device__ __forceinline__ uint4 GemvLoadStreaming(const uint4* ptr) {
  uint4 v;
  asm volatile("ld.global.nc.L1::no_allocate.L2::256B.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(ptr));
  return v;
}

// 8 packed bf16 → float32 (bf16 is the top half of a float32).
__device__ __forceinline__ void GemvUnpack(const uint4& v, float* out) {
  const uint32_t words[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    out[2 * i] = __uint_as_float(words[i] << 16);
    out[2 * i + 1] = __uint_as_float(words[i] & 0xffff0000u);
  }
}

// Weight elements per 16-byte vector: 8 bf16 or 16 E4M3.
template <bool kFp8>
constexpr int kGemvVecElems = kFp8 ? 16 : 8;

template <bool kFp8>
__device__ __forceinline__ void GemvUnpackW(const uint4& v, float* out) {
  if constexpr (kFp8) {
    Fp8Unpack16(v, out);
  } else {
    GemvUnpack(v, out);
  }
}

// x elements [i · kGemvVecElems, (i + 1) · kGemvVecElems) of a bf16 row (as 16-byte vectors).
template <bool kFp8>
__device__ __forceinline__ void GemvLoadX(const uint4* row, int64_t i, float* out) {
  if constexpr (kFp8) {
    GemvUnpack(__ldg(row + 2 * i), out);
    GemvUnpack(__ldg(row + 2 * i + 1), out + 8);
  } else {
    GemvUnpack(__ldg(row + i), out);
  }
}

// The same from shared memory (the prologue's x row).
template <bool kFp8>
__device__ __forceinline__ void GemvLoadXShared(const uint4* row, int64_t i, float* out) {
  if constexpr (kFp8) {
    GemvUnpack(row[2 * i], out);
    GemvUnpack(row[2 * i + 1], out + 8);
  } else {
    GemvUnpack(row[i], out);
  }
}

template <bool kFp8, typename OutT>
__device__ __forceinline__ const uint4* GemvWeightRow(const GemvParams<OutT>& p, int64_t o) {
  if constexpr (kFp8) {
    return reinterpret_cast<const uint4*>(p.w_fp8 + o * p.in_features);
  } else {
    return reinterpret_cast<const uint4*>(p.w + o * p.in_features);
  }
}

// The FP8 row scale (1 for bf16 weights).
template <typename OutT>
__device__ __forceinline__ float GemvRowScale(const GemvParams<OutT>& p, int64_t o) {
  return p.w_scale != nullptr ? p.w_scale[o] : 1.0f;
}

template <typename OutT>
__device__ __forceinline__ void GemvStore(const GemvParams<OutT>& p, int r, int64_t o, float v) {
  if (p.w_scale != nullptr) v *= p.w_scale[o];
  if (p.bias != nullptr) v += ToFloat(p.bias[o]);
  p.y[r * p.ldy + o] = FromFloat<OutT>(v);
}

// The batch-1 add+RMSNorm prologue (gemv.h): the block writes x (in_features bf16) to xs. Runs
// after PdlWait; every thread of the block takes part (block-wide reduction and barriers).
// Pass 1 follows RmsNormVecKernel's order (thread t: vectors t, t + stride, ...), which makes
// the rounding identical whenever RmsNorm would launch <= blockDim threads (in_features <= 4,096);
// wider rows use stride = blockDim (correct, not bit-identical). Up to kRmsNormMaxVecs vectors per
// thread, all loads are issued before any use (one L2 round trip); beyond, a plain loop.
template <typename OutT>
__device__ __forceinline__ void GemvAddRmsNorm(const GemvParams<OutT>& p, __nv_bfloat16* xs) {
  const GemvPrologueParams& q = p.prologue;
  const int num_vecs = static_cast<int>(p.in_features / 8);
  const int norm_threads = RmsNormVecThreads(num_vecs);
  const int stride = norm_threads < static_cast<int>(blockDim.x) ? norm_threads : blockDim.x;
  const int t = threadIdx.x;
  const bool store_residual = q.addend != nullptr && blockIdx.x == 0;
  // r = bf16(a + r) (or r), to xs (and residual_out), accumulating r^2 in RmsNorm's order.
  auto add = [&](int i, float* r, const float* a, float& sum_sq) {
    if (q.addend != nullptr) {
#pragma unroll
      for (int e = 0; e < 8; ++e) r[e] = ToFloat(FromFloat<__nv_bfloat16>(a[e] + r[e]));
      if (store_residual) StoreVec(q.residual_out + i * 8, r);
    }
    StoreVec(xs + i * 8, r);
#pragma unroll
    for (int e = 0; e < 8; ++e) sum_sq += r[e] * r[e];
  };
  float sum_sq = 0.0f;
  if (t < stride) {
    if (num_vecs <= kRmsNormMaxVecs * stride) {
      uint4 rv[kRmsNormMaxVecs], av[kRmsNormMaxVecs];
#pragma unroll
      for (int k = 0; k < kRmsNormMaxVecs; ++k) {
        const int i = t + k * stride;
        if (i < num_vecs) {
          rv[k] = *reinterpret_cast<const uint4*>(q.residual + i * 8);
          if (q.addend != nullptr) av[k] = *reinterpret_cast<const uint4*>(q.addend + i * 8);
        }
      }
#pragma unroll
      for (int k = 0; k < kRmsNormMaxVecs; ++k) {
        const int i = t + k * stride;
        if (i < num_vecs) {
          float r[8], a[8];
          GemvUnpack(rv[k], r);
          if (q.addend != nullptr) GemvUnpack(av[k], a);
          add(i, r, a, sum_sq);
        }
      }
    } else {
      for (int i = t; i < num_vecs; i += stride) {
        float r[8], a[8];
        LoadVec(q.residual + i * 8, r);
        if (q.addend != nullptr) LoadVec(q.addend + i * 8, a);
        add(i, r, a, sum_sq);
      }
    }
  }
  // BlockSum's barriers also order pass 1's xs writes before pass 2's reads.
  const float inv_rms = rsqrtf(BlockSum(sum_sq) / static_cast<int>(p.in_features) + q.eps);
  for (int i = t; i < num_vecs; i += blockDim.x) {
    float r[8], w[8];
    LoadVec(xs + i * 8, r);
    LoadVec(q.norm_weight + i * 8, w);
#pragma unroll
    for (int e = 0; e < 8; ++e) r[e] = r[e] * inv_rms * w[e];
    StoreVec(xs + i * 8, r);
  }
  __syncthreads();
}

// What the vectorized kernel stores: each row (kStore), or per warp one pair of rows combined
// (gemv.h): SiLU·mul of (gate j, up I + j), or a RoPE pair (i, i + D/2) of one head.
enum class GemvEpilogue { kStore, kSiluMul, kRope };

// Row j (0 or 1) of pair `pair` for the pairing epilogues.
template <GemvEpilogue kEpi, typename OutT>
__device__ __forceinline__ int64_t GemvPairRow(const GemvParams<OutT>& p, int64_t pair, int j) {
  if constexpr (kEpi == GemvEpilogue::kSiluMul) {
    return pair + j * (p.out_features / 2);
  } else {
    const int64_t half = p.rope.head_dim / 2;
    return (pair / half) * p.rope.head_dim + pair % half + j * half;
  }
}

// Requires in_features % 8 == 0, ldx % 8 == 0, 16-byte aligned x and w; rows == kRows. With the
// prologue (kRows == 1) x comes from dynamic shared memory of in_features bf16. Pairing epilogues
// (kRows == 1, kWarpRows == 2): warp w computes pair w.
template <int kRows, int kWarpRows, int kUnroll, GemvPrologue kPro, GemvEpilogue kEpi,
          typename OutT, bool kFp8>
__global__ void __launch_bounds__(kGemvWarps * 32) GemvVecKernel(GemvParams<OutT> p) {
  constexpr int kElems = kGemvVecElems<kFp8>;
  constexpr bool kPairs = kEpi != GemvEpilogue::kStore;
  static_assert(kPro == GemvPrologue::kNone || kRows == 1, "the prologue computes one row of x");
  static_assert(!kPairs || (kRows == 1 && kWarpRows % 2 == 0), "pairs: 1 row, whole pairs");
  constexpr int kWarpPairs = kWarpRows / 2;
  extern __shared__ uint4 gemv_x_smem[];
  constexpr bool kPrologue = kPro != GemvPrologue::kNone;
  const int lane = threadIdx.x & 31;
  const int64_t warp = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  // Output rows of this warp: row0 + j, or the rows of pairs row0 + q, q < kWarpPairs.
  const int64_t row0 = kPairs ? warp * kWarpPairs : warp * kWarpRows;
  const int64_t rows_end = kPairs ? p.out_features / 2 : p.out_features;
  // The whole warp leaves together; with a prologue it stays for the block's barriers (its loads
  // clamp to the last row and it stores nothing).
  if (!kPrologue && row0 >= rows_end) {
    PdlWait();
    return;
  }
  const int64_t num_vecs = p.in_features / kElems;
  const uint4* w_rows[kWarpRows];
#pragma unroll
  for (int j = 0; j < kWarpRows; ++j) {
    int64_t o;
    if constexpr (kPairs) {
      o = GemvPairRow<kEpi>(p, min(row0 + j / 2, rows_end - 1), j % 2);
    } else {
      o = min(row0 + j, rows_end - 1);
    }
    w_rows[j] = GemvWeightRow<kFp8>(p, o);
  }
  const uint4* x_rows[kRows];
#pragma unroll
  for (int r = 0; r < kRows; ++r) x_rows[r] = reinterpret_cast<const uint4*>(p.x + r * p.ldx);

  constexpr int64_t kRoundVecs = 32 * kUnroll;
  uint4 wv[kUnroll][kWarpRows];
  auto load_round = [&](int64_t base) {
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * 32;
      if (i < num_vecs) {
#pragma unroll
        for (int j = 0; j < kWarpRows; ++j) wv[u][j] = GemvLoadStreaming(w_rows[j] + i);
      }
    }
  };
  // The weights do not depend on the previous kernel: the first round streams in while it still
  // runs (PDL); x (or the prologue's inputs) is read only after PdlWait.
  load_round(lane);
  PdlWait();
  if constexpr (kPrologue) GemvAddRmsNorm(p, reinterpret_cast<__nv_bfloat16*>(gemv_x_smem));

  float acc[kRows][kWarpRows] = {};
  for (int64_t base = lane; base < num_vecs; base += kRoundVecs) {
    if (base != lane) load_round(base);
#pragma unroll
    for (int u = 0; u < kUnroll; ++u) {
      const int64_t i = base + u * 32;
      if (i < num_vecs) {
        float wf[kWarpRows][kElems];
#pragma unroll
        for (int j = 0; j < kWarpRows; ++j) GemvUnpackW<kFp8>(wv[u][j], wf[j]);
#pragma unroll
        for (int r = 0; r < kRows; ++r) {
          float xf[kElems];
          if constexpr (kPrologue) {
            GemvLoadXShared<kFp8>(gemv_x_smem, i, xf);
          } else {
            GemvLoadX<kFp8>(x_rows[r], i, xf);
          }
#pragma unroll
          for (int j = 0; j < kWarpRows; ++j) {
#pragma unroll
            for (int e = 0; e < kElems; ++e) acc[r][j] = fmaf(xf[e], wf[j][e], acc[r][j]);
          }
        }
      }
    }
  }
  // Late trigger: the next kernel's blocks are scheduled only once every block of this one has
  // streamed its weights, so they never pile onto the SMs that free up first.
  PdlLaunchDependents();
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
#pragma unroll
    for (int j = 0; j < kWarpRows; ++j) acc[r][j] = WarpSum(acc[r][j]);
  }
  if (lane == 0) {
    if constexpr (kPairs) {
#pragma unroll
      for (int q = 0; q < kWarpPairs; ++q) {
        const int64_t pair = row0 + q;
        if (pair >= rows_end) break;
        int64_t o[2];
        float v[2] = {acc[0][2 * q], acc[0][2 * q + 1]};
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          o[j] = GemvPairRow<kEpi>(p, pair, j);
          if constexpr (kFp8) v[j] *= GemvRowScale(p, o[j]);
          if (p.bias != nullptr) v[j] += ToFloat(p.bias[o[j]]);
          v[j] = ToFloat(FromFloat<OutT>(v[j]));  // as the plain Gemv stores it
        }
        if constexpr (kEpi == GemvEpilogue::kSiluMul) {
          p.y[pair] = FromFloat<OutT>(Silu(v[0]) * v[1]);
        } else {
          const GemvRopeParams& r = p.rope;
          const int D = r.head_dim;
          const int head = static_cast<int>(o[0] / D);
          const int i = static_cast<int>(o[0] % D);
          if (head < r.num_heads + r.num_kv_heads) {
            RopeRotate(static_cast<float>(r.positions[0]), r.inv_freq[i], r.attention_scaling, v[0],
                       v[1]);
          }
          if (head < r.num_heads) {
            p.y[o[0]] = FromFloat<OutT>(v[0]);
            p.y[o[1]] = FromFloat<OutT>(v[1]);
          } else if (const int64_t slot = r.slot_mapping[0]; slot >= 0) {
            const bool is_k = head < r.num_heads + r.num_kv_heads;
            const int kvh = head - r.num_heads - (is_k ? 0 : r.num_kv_heads);
            __nv_bfloat16* dst =
                (is_k ? r.k_cache : r.v_cache) + (slot * r.num_kv_heads + kvh) * D + i;
            dst[0] = FromFloat<__nv_bfloat16>(v[0]);
            dst[D / 2] = FromFloat<__nv_bfloat16>(v[1]);
          }
        }
      }
    } else {
#pragma unroll
      for (int j = 0; j < kWarpRows; ++j) {
        const int64_t o = row0 + j;
        if (o >= p.out_features) break;
#pragma unroll
        for (int r = 0; r < kRows; ++r) GemvStore(p, r, o, acc[r][j]);
      }
    }
  }
}

// Plain products of kRows activation rows (see the top of this file): block = kGemvSplit warps
// computing output row blockIdx.x for every activation row (each weight vector is loaded once and
// multiplied by the kRows x vectors). Requires in_features % 8 == 0, ldx % 8 == 0 and 16-byte
// aligned w and x.
template <int kRows, typename OutT, bool kFp8>
__global__ void __launch_bounds__(kGemvSplit * 32) GemvRowKernel(GemvParams<OutT> p) {
  constexpr int kElems = kGemvVecElems<kFp8>;
  __shared__ float partial[kRows][kGemvSplit];
  const int lane = threadIdx.x & 31;
  const int part = threadIdx.x >> 5;
  const int64_t row = blockIdx.x;
  const uint4* w = GemvWeightRow<kFp8>(p, row);
  const int64_t num_vecs = p.in_features / kElems;
  constexpr int64_t kStride = 32 * kGemvSplit;
  int64_t i = part * 32 + lane;
  // The weights do not depend on the previous kernel: the first load is in flight while it still
  // runs (PDL); x is read only after PdlWait.
  uint4 wv = i < num_vecs ? GemvLoadStreaming(w + i) : uint4{};
  PdlWait();
  float acc[kRows] = {};
  for (; i < num_vecs; i += kStride) {
    const uint4 next = i + kStride < num_vecs ? GemvLoadStreaming(w + i + kStride) : uint4{};
    float wf[kElems];
    GemvUnpackW<kFp8>(wv, wf);
#pragma unroll
    for (int r = 0; r < kRows; ++r) {
      float xf[kElems];
      GemvLoadX<kFp8>(reinterpret_cast<const uint4*>(p.x + r * p.ldx), i, xf);
#pragma unroll
      for (int e = 0; e < kElems; ++e) acc[r] = fmaf(xf[e], wf[e], acc[r]);
    }
    wv = next;
  }
  PdlLaunchDependents();  // late trigger, as in GemvVecKernel
#pragma unroll
  for (int r = 0; r < kRows; ++r) {
    const float v = WarpSum(acc[r]);
    if (lane == 0) partial[r][part] = v;
  }
  __syncthreads();
  if (threadIdx.x < kRows) {
    const int r = threadIdx.x;
    float v = partial[r][0];
#pragma unroll
    for (int q = 1; q < kGemvSplit; ++q) v += partial[r][q];
    GemvStore(p, r, row, v);
  }
}

// Any shape and alignment: one warp per output row, element loads.
template <typename OutT>
__global__ void __launch_bounds__(kGemvWarps * 32) GemvScalarKernel(GemvParams<OutT> p) {
  const int lane = threadIdx.x & 31;
  const int64_t o = static_cast<int64_t>(blockIdx.x) * kGemvWarps + (threadIdx.x >> 5);
  PdlLaunchDependents();
  PdlWait();
  if (o >= p.out_features) return;
  float acc[kGemvMaxRows] = {};
  for (int64_t i = lane; i < p.in_features; i += 32) {
    float w;
    if (p.w_fp8 != nullptr) {
      const uint8_t b = p.w_fp8[o * p.in_features + i];
      w = Fp8x2ToFloat2(static_cast<uint16_t>(b)).x;
    } else {
      w = ToFloat(p.w[o * p.in_features + i]);
    }
#pragma unroll
    for (int r = 0; r < kGemvMaxRows; ++r) {
      if (r < p.rows) acc[r] = fmaf(ToFloat(p.x[r * p.ldx + i]), w, acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < kGemvMaxRows; ++r) {
    if (r < p.rows) {
      const float v = WarpSum(acc[r]);
      if (lane == 0) GemvStore(p, r, o, v);
    }
  }
}

}  // namespace kiln::kernels
